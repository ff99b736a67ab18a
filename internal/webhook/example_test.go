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

// A receiver checks the signature — over the timestamp, the delivery ID and
// the body — and the timestamp's age before trusting a notification, and
// drops a delivery ID it has seen (delivery is at least once; and a capture
// replayed within the age limit carries an ID already seen, since another ID
// would not match the signature).
func ExampleVerify() {
	secret := []byte("the NOTIFY_SECRET refundd was given")
	seen := map[string]bool{} // keep IDs at least NOTIFY_MAX_AGE (retries come that long)
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		id := r.Header.Get(webhook.DeliveryHeader)
		if err := webhook.Verify(secret, r.Header.Get(webhook.SignatureHeader), id, body, time.Now(), 5*time.Minute); err != nil {
			fmt.Println("refused:", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if !seen[id] {
			seen[id] = true
			fmt.Printf("delivery %s: %s\n", id, body)
		}
		w.WriteHeader(http.StatusNoContent) // any 2xx stops the retries
	})

	// What refundd sends, and the same capture replayed under another ID:
	body := `{"task_id":"refund:cancel:73152889:20261129T100000Z","run":1,"outcome":"cancelled","order_ref":"73152889"}`
	sig := webhook.Sign(secret, time.Now(), "refund:cancel:73152889:20261129T100000Z#1", []byte(body))
	for _, id := range []string{"refund:cancel:73152889:20261129T100000Z#1", "refund:cancel:73152889:20261129T100000Z#2"} {
		req := httptest.NewRequest(http.MethodPost, "/refundd-hook", strings.NewReader(body))
		req.Header.Set(webhook.SignatureHeader, sig)
		req.Header.Set(webhook.DeliveryHeader, id)
		rec := httptest.NewRecorder()
		hook.ServeHTTP(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// delivery refund:cancel:73152889:20261129T100000Z#1: {"task_id":"refund:cancel:73152889:20261129T100000Z","run":1,"outcome":"cancelled","order_ref":"73152889"}
	// 204
	// refused: webhook: signature does not match the delivery ID and body
	// 401
}
