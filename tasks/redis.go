package tasks

import (
	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/redisconn"
)

// RedisFromEnv answers the way to the queue's Redis as refundd reads it,
// for EnqueuerConfig.Redis: REDIS_URL — redis://, rediss://, with an ACL
// user name, redis-sentinel://, redis-cluster:// — with REDIS_CA_FILE,
// REDIS_CERT_FILE and REDIS_KEY_FILE. Pass os.Getenv. Its errors name the
// variable and never hold the password. (asynq.ParseRedisURI drops a user
// name, and knows no cluster URL and no CA.)
func RedisFromEnv(getenv func(string) string) (asynq.RedisConnOpt, error) {
	return redisconn.Open(redisconn.FromEnv(getenv))
}
