package loopback_test

import (
	"testing"

	"github.com/refundd/refund-canceller/internal/loopback"
)

func TestHost(t *testing.T) {
	for host, want := range map[string]bool{
		"localhost":        true,
		"127.0.0.1":        true,
		"127.8.9.10":       true,
		"::1":              true,
		"":                 false,
		"0.0.0.0":          false,
		"::":               false,
		"10.0.0.1":         false,
		"localhost.evil":   false,
		"127.0.0.1.nip.io": false,
		"[::1]":            false, // brackets are the caller's to strip (url.Hostname, net.SplitHostPort)
	} {
		if got := loopback.Host(host); got != want {
			t.Errorf("Host(%q) = %v, want %v", host, got, want)
		}
	}
}
