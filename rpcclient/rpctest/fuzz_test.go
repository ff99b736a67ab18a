package rpctest_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/rpcclient/rpctest"
)

// FuzzServeRPC throws arbitrary bodies at the RPC endpoint: it must always
// answer a JSON-RPC envelope and never panic.
func FuzzServeRPC(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","method":"login","params":["SANDBOX","2026-11-25 10:00:00","abc"],"id":1}`,
		`{"jsonrpc":"2.0","method":"cancelRefund","params":["sid","A1"],"id":2}`,
		`{"jsonrpc":"2.0","method":"getOrder","params":[null,{}],"id":3}`,
		`{"jsonrpc":"2.0","method":"issueRefund","params":["s","A1",1,[],"c","r","extra"],"id":4}`,
		`{"method":1}`, `[]`, `null`, `{"id":1e400}`, `{"jsonrpc":"2.0","method":"x","params":"y","id":-0}`,
		"\xff\xfe", ``,
	} {
		f.Add([]byte(seed))
	}
	sb, err := rpctest.New(rpctest.Config{Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	_ = sb.Seed(rpctest.Refund{OrderRef: "A1", InitiatedAt: t0})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		sb.ServeHTTP(rec, httptest.NewRequest("POST", "/rpc/6.0/", strings.NewReader(string(body))))
		if rec.Code != 200 && rec.Code != 413 {
			t.Fatalf("status %d", rec.Code)
		}
		if !strings.HasPrefix(rec.Body.String(), `{"jsonrpc":"2.0","id":`) {
			t.Fatalf("answer %q", rec.Body.String())
		}
	})
}

// FuzzDecodeRequest checks the request decoder alone.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","method":"cancelRefund","params":["sid","A1"],"id":2}`))
	f.Add([]byte(`{"jsonrpc":"2.0","method":"x","id":99999999999999999999999}`))
	f.Add([]byte(`{"method":"x","params":[1,2,3],"id":"1"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		method, _, id, err := rpctest.DecodeRequest(body)
		if err == nil && (method == "" || len(id) == 0) {
			t.Fatalf("accepted without method or id: %q", body)
		}
	})
}
