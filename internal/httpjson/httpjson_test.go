package httpjson_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/refundd/refund-canceller/internal/httpjson"
)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	httpjson.Write(rec, http.StatusTeapot, map[string]int{"n": 1})
	if rec.Code != http.StatusTeapot || rec.Header().Get("Content-Type") != "application/json" || rec.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("status %d, headers %v", rec.Code, rec.Header())
	}
	var got map[string]int
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || got["n"] != 1 {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
}
