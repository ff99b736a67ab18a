package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/refundd/refund-canceller/internal/webhook"
)

// A receiver checks the signature and the timestamp's age before trusting a
// notification, and drops repeats by the Refundd-Delivery header (delivery
// is at least once).
func ExampleVerify() {
	secret := []byte("the NOTIFY_SECRET refundd was given")
	seen := map[string]bool{}
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if id := r.Header.Get(webhook.DeliveryHeader); !seen[id] {
			seen[id] = true
			fmt.Printf("cancellation %s ended: %s\n", id, body)
		}
		w.WriteHeader(http.StatusNoContent) // any 2xx stops the retries
	})

	// What refundd sends:
	body := `{"outcome":"cancelled","order_ref":"73152889"}`
	req := httptest.NewRequest(http.MethodPost, "/refundd-hook", strings.NewReader(body))
	req.Header.Set(webhook.SignatureHeader, webhook.Sign(secret, time.Now(), []byte(body)))
	req.Header.Set(webhook.DeliveryHeader, "refund:cancel:73152889:20261129T100000Z")
	rec := httptest.NewRecorder()
	hook.ServeHTTP(rec, req)
	fmt.Println(rec.Code)
	// Output:
	// cancellation refund:cancel:73152889:20261129T100000Z ended: {"outcome":"cancelled","order_ref":"73152889"}
	// 204
}
