package redisconn

import (
	"net/url"
	"strings"
	"testing"
)

// FuzzParse: no input panics, and a password never comes back in an
// error. The seeds run in every `go test`; `go test -fuzz=FuzzParse
// ./internal/redisconn` explores further.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"redis://127.0.0.1:6379", "redis://u:p@h:1/2", "rediss://h", "redis://[::1]:7000/0", "redis://h:0", "redis://h:1/x",
		"redis-socket:///run/r.sock?db=1", "redis-socket://u:p@/s?db=x", "redis-sentinel://a:1,b:2/1?master=m", "redis-sentinel://a,b?master=m",
		"redis-cluster://u:p@a:1,b:2", "rediss-cluster://a:1,,b:2", "redis-cluster://a:1,b", "redis-cluster://a:1/3", "http://h", "redis://%zz",
		"redis://:@h:1", "redis://h:1?x", "redis://h:1?", "redis-cluster://[::1]:1,[::2]:2",
	} {
		f.Add(s, "")
		f.Add(s, "hunter2-SECRET")
	}
	f.Fuzz(func(t *testing.T, raw, password string) {
		opt, err := Parse(raw)
		if err == nil && opt == nil {
			t.Fatalf("%q: no options and no error", raw)
		}
		// The same URL with a password put in: the error may not show it.
		if password == "" || len(password) < 6 || strings.ContainsAny(password, "\x00") {
			return
		}
		i := strings.Index(raw, "://")
		if i < 0 {
			return
		}
		rest := raw[i+3:]
		if strings.Contains(rest, password) || strings.Contains(raw[:i], password) {
			return
		}
		withPw := raw[:i+3] + url.UserPassword("u", password).String() + "@" + strings.TrimLeft(rest, "@")
		if _, err := Parse(withPw); err != nil {
			if strings.Contains(err.Error(), password) || strings.Contains(err.Error(), url.QueryEscape(password)) ||
				strings.Contains(err.Error(), url.PathEscape(password)) {
				t.Fatalf("%q: the password in the error %q", withPw, err)
			}
		}
	})
}
