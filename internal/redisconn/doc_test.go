package redisconn

import (
	"os"
	"strings"
	"testing"
)

// docs/redis.md shows the ACL rules TestACLUser runs with, verbatim.
func TestDocShowsACLRules(t *testing.T) {
	b, err := os.ReadFile("../../docs/redis.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "ACL SETUSER refundd on >CHANGE-ME "+ACLRules+"\n") {
		t.Fatal("docs/redis.md does not show redisconn.ACLRules as they are")
	}
}
