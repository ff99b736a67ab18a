package tasks_test

import (
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/tasks"
)

func TestRedisFromEnv(t *testing.T) {
	env := map[string]string{"REDIS_URL": "redis://producer:hunter2-secret@10.0.0.1:6379/2"}
	opt, err := tasks.RedisFromEnv(func(k string) string { return env[k] })
	if o, ok := opt.(asynq.RedisClientOpt); err != nil || !ok || o.Username != "producer" || o.Password != "hunter2-secret" || o.DB != 2 {
		t.Fatalf("%#v %v", opt, err)
	}
	env["REDIS_CA_FILE"] = "/nonexistent/ca.pem"
	if _, err := tasks.RedisFromEnv(func(k string) string { return env[k] }); err == nil || !strings.HasPrefix(err.Error(), "REDIS_CA_FILE") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("%v", err)
	}
}
