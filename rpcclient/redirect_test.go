package rpcclient_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/refundd/refund-canceller/rpcclient"
)

// TestRedirectsNeverFollowed: whatever 3xx the endpoint answers, to login or
// to cancelRefund, nothing reaches the host it points to (which would get
// the login's HMAC or the session); the call fails as an unexpected answer
// (transient: retried, never a refusal) naming where it pointed.
func TestRedirectsNeverFollowed(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		fmt.Fprint(w, `{"jsonrpc":"2.0","id":1,"result":"stolen-session"}`)
	}))
	defer other.Close()
	target := other.URL + "/rpc/6.0/"
	for _, status := range []int{301, 302, 303, 307, 308} {
		for _, at := range []string{"login", "cancelRefund"} {
			for _, given := range []bool{false, true} {
				t.Run(fmt.Sprintf("%d at %s, own client %v", status, at, given), func(t *testing.T) {
					vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						var req struct {
							Method string `json:"method"`
							ID     int64  `json:"id"`
						}
						b, _ := io.ReadAll(r.Body)
						_ = json.Unmarshal(b, &req)
						if req.Method == at {
							http.Redirect(w, r, target, status)
							return
						}
						fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%d,"result":"sid"}`, req.ID)
					}))
					defer vendor.Close()
					cfg := rpcclient.Config{URL: vendor.URL, MerchantCode: "M", SecretKey: "S"}
					var own *http.Client
					if given {
						own = &http.Client{} // follows redirects by default
						cfg.HTTPClient = own
					}
					c, err := rpcclient.New(cfg)
					if err != nil {
						t.Fatal(err)
					}
					_, err = c.CancelRefund(context.Background(), "A1", nil)
					if n := elsewhere.Load(); n != 0 {
						t.Fatalf("%d requests reached the host the redirect pointed to", n)
					}
					var ae *rpcclient.APIError
					if !errors.As(err, &ae) || ae.HTTPStatus != status || ae.Method != at {
						t.Fatalf("err %v: want an APIError of %s with HTTP %d", err, at, status)
					}
					if !strings.Contains(err.Error(), target) {
						t.Fatalf("err %q does not say where the redirect pointed (%s)", err, target)
					}
					if cl := rpcclient.Classify(err); cl != rpcclient.ClassTransient {
						t.Fatalf("class %v, want transient (an unexpected answer)", cl)
					}
					if want := at == "cancelRefund"; rpcclient.MaybeApplied(err) != want {
						t.Fatalf("MaybeApplied %v, want %v", rpcclient.MaybeApplied(err), want)
					}
					if given && own.CheckRedirect != nil {
						t.Fatal("the caller's http.Client was changed")
					}
				})
			}
		}
	}
}
