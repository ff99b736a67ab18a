package webhook_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/internal/webhook"
)

// The checks docs/ gives receivers that do not use this package, verbatim
// (docs' "Completion webhooks"): keep them in step.

// docsGoCheck is the Go snippet: sig and id are the Refundd-Signature and
// Refundd-Delivery headers.
func docsGoCheck(secret []byte, sig, id string, body []byte) bool {
	ts, mac, _ := strings.Cut(strings.TrimPrefix(sig, "t="), ",v2=") // sig: the Refundd-Signature header
	m := hmac.New(sha256.New, secret)
	fmt.Fprintf(m, "%s.%s.%s", ts, id, body) // id: the Refundd-Delivery header
	sec, _ := strconv.ParseInt(ts, 10, 64)
	want := hex.EncodeToString(m.Sum(nil))
	ok := hmac.Equal([]byte(mac), []byte(want)) && time.Since(time.Unix(sec, 0)).Abs() < 5*time.Minute
	return ok
}

// docsShellCheck is the shell snippet: $SIG and $ID the headers, the body
// in body.json.
const docsShellCheck = `t=${SIG#t=}; t=${t%%,*}; now=$(date +%s)
[ "v2=$(printf '%s.%s.%s' "$t" "$ID" "$(cat body.json)" | openssl dgst -sha256 -hmac "$NOTIFY_SECRET" | cut -d' ' -f2)" = "${SIG#*,}" ] &&
  [ $((now - t)) -lt 300 ] && [ $((t - now)) -lt 300 ] && echo valid`

// TestDocumentedChecks: a delivery refundd signs passes the documented
// checks; the same capture replayed under another delivery ID, or with its
// body changed, or signed longer ago than the age limit, does not.
func TestDocumentedChecks(t *testing.T) {
	secret := []byte("whsec-documented-1")
	const id = "refund:cancel:73152889:20261129T100000Z#1"
	body := []byte(`{"task_id":"refund:cancel:73152889:20261129T100000Z","run":1,"outcome":"cancelled"}`)
	fresh := webhook.Sign(secret, time.Now(), id, body)
	cases := []struct {
		name string
		sig  string
		id   string
		body []byte
		want bool
	}{
		{"as sent", fresh, id, body, true},
		{"replayed under another delivery ID", fresh, "refund:cancel:73152889:20261129T100000Z#2", body, false},
		{"replayed under another task's ID", fresh, "refund:cancel:99999999:20261129T100000Z#1", body, false},
		{"body changed", fresh, id, []byte(strings.Replace(string(body), "cancelled", "refused", 1)), false},
		{"signed too long ago", webhook.Sign(secret, time.Now().Add(-10*time.Minute), id, body), id, body, false},
	}
	_, shErr := exec.LookPath("sh")
	_, sslErr := exec.LookPath("openssl")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := docsGoCheck(secret, tc.sig, tc.id, tc.body); got != tc.want {
				t.Errorf("Go check: %v, want %v", got, tc.want)
			}
			if got := webhook.Verify(secret, tc.sig, tc.id, tc.body, time.Now(), 0) == nil; got != tc.want {
				t.Errorf("Verify: %v, want %v", got, tc.want)
			}
			if shErr != nil || sslErr != nil {
				t.Log("no sh or openssl: the shell check is not run")
				return
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "body.json"), tc.body, 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sh", "-c", docsShellCheck)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "SIG="+tc.sig, "ID="+tc.id, "NOTIFY_SECRET="+string(secret))
			out, _ := cmd.Output()
			if got := strings.TrimSpace(string(out)) == "valid"; got != tc.want {
				t.Errorf("shell check: %v (%q), want %v", got, out, tc.want)
			}
		})
	}
}
