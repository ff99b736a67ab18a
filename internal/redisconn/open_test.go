package redisconn_test

import (
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/redisconn"
	"github.com/refundd/refund-canceller/internal/redistest"
)

func TestOpenTLSFiles(t *testing.T) {
	ca := redistest.NewCA(t)
	cert, key := ca.Issue(t, "client")
	opt, err := redisconn.Open(redisconn.Settings{URL: "rediss://refundd:pw@127.0.0.1:6380", CAFile: ca.File, CertFile: cert, KeyFile: key})
	if err != nil {
		t.Fatal(err)
	}
	cfg := opt.(asynq.RedisClientOpt).TLSConfig
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.InsecureSkipVerify || cfg.MinVersion != tls.VersionTLS12 {
		t.Fatalf("TLS %#v", cfg)
	}
	opt, err = redisconn.Open(redisconn.FromEnv(envMap{"REDIS_URL": "rediss-cluster://127.0.0.1:7000,127.0.0.1:7001", "REDIS_CA_FILE": ca.File}.get))
	if err != nil {
		t.Fatal(err)
	}
	if c := opt.(asynq.RedisClusterClientOpt).TLSConfig; c.RootCAs == nil || c.Certificates != nil {
		t.Fatalf("cluster TLS %#v", c)
	}
}

type envMap map[string]string

func (m envMap) get(k string) string { return m[k] }

func TestOpenRejects(t *testing.T) {
	ca := redistest.NewCA(t)
	cert, key := ca.Issue(t, "client")
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	const tlsURL = "rediss://:secretpw@127.0.0.1:6380"
	for name, tc := range map[string]struct {
		s    redisconn.Settings
		want string
	}{
		"bad URL":          {redisconn.Settings{URL: "redis://:secretpw@h:1/x"}, "REDIS_URL database \"x\": want a number"},
		"CA without TLS":   {redisconn.Settings{URL: "redis://:secretpw@h:1", CAFile: ca.File}, "REDIS_CA_FILE is set but REDIS_URL is not a TLS URL"},
		"cert without TLS": {redisconn.Settings{URL: "redis-sentinel://:secretpw@h:1?master=m", CertFile: cert, KeyFile: key}, "REDIS_CERT_FILE is set but REDIS_URL"},
		"key alone":        {redisconn.Settings{URL: "redis://h:1", KeyFile: key}, "REDIS_KEY_FILE is set but"},
		"missing CA":       {redisconn.Settings{URL: tlsURL, CAFile: filepath.Join(dir, "nope.pem")}, "REDIS_CA_FILE cannot be read: no such file"},
		"junk CA":          {redisconn.Settings{URL: tlsURL, CAFile: junk}, "REDIS_CA_FILE holds no PEM certificate"},
		"cert alone":       {redisconn.Settings{URL: tlsURL, CertFile: cert}, "REDIS_CERT_FILE is set without REDIS_KEY_FILE"},
		"key only":         {redisconn.Settings{URL: tlsURL, KeyFile: key}, "REDIS_KEY_FILE is set without REDIS_CERT_FILE"},
		"missing key":      {redisconn.Settings{URL: tlsURL, CertFile: cert, KeyFile: filepath.Join(dir, "nope")}, "REDIS_KEY_FILE cannot be read"},
		"junk cert":        {redisconn.Settings{URL: tlsURL, CertFile: junk, KeyFile: key}, "REDIS_CERT_FILE and REDIS_KEY_FILE are not a certificate and its key"},
		"swapped":          {redisconn.Settings{URL: tlsURL, CertFile: key, KeyFile: cert}, "are not a certificate and its key"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := redisconn.Open(tc.s)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secretpw") || strings.Contains(err.Error(), "PRIVATE") {
				t.Fatalf("a secret in %q", err)
			}
		})
	}
}
