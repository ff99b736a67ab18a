// Package testutil holds helpers shared by the project's tests.
package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond every few milliseconds until it is true, failing
// the test if it is still false after within. Tests wait with it instead of
// sleeping for work to happen.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
