package webhook

import (
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/refundd/refund-canceller/internal/redistest"
	"github.com/refundd/refund-canceller/internal/testutil"
)

// receiver is a test webhook endpoint: it fails the first failFirst
// deliveries with 500, then verifies and records each one.
type receiver struct {
	secret    []byte
	failFirst int
	calls     chan struct{} // one per request, for the test to wait on

	mu        sync.Mutex
	seen      int
	delivered map[string][]string // delivery ID → verified bodies
	bad       []string
}

func newReceiver(secret string, failFirst int) *receiver {
	return &receiver{secret: []byte(secret), failFirst: failFirst, calls: make(chan struct{}, 100), delivered: map[string][]string{}}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() { rc.calls <- struct{}{} }()
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.seen++
	if rc.seen <= rc.failFirst {
		http.Error(w, "down for maintenance", http.StatusInternalServerError)
		return
	}
	if err := Verify(rc.secret, r.Header.Get(SignatureHeader), r.Header.Get(DeliveryHeader), body, time.Now(), 0); err != nil {
		rc.bad = append(rc.bad, err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	id := r.Header.Get(DeliveryHeader)
	rc.delivered[id] = append(rc.delivered[id], string(body))
}

func (rc *receiver) snapshot() (map[string][]string, []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d := map[string][]string{}
	for k, v := range rc.delivered {
		d[k] = append([]string(nil), v...)
	}
	return d, append([]string(nil), rc.bad...)
}

// TestDeliveryRetriesAndSurvivesRestart: the receiver fails the first two
// deliveries, the delivering server is stopped after the first failure and
// a new one started (a refundd restart): each final state still arrives
// exactly once, verified; enqueuing the same notification twice sends it once.
func TestDeliveryRetriesAndSurvivesRestart(t *testing.T) {
	r := redistest.New(t)
	queue := r.Queue(t)
	rc := newReceiver("whsec-1", 2)
	srv := httptest.NewServer(rc)
	defer srv.Close()

	n := NewNotifier(r.Opt, queue, 0, nil)
	defer n.Close()
	ctx := context.Background()
	records := map[string]string{
		"refund:cancel:A1:20261129T000000Z#1": `{"outcome":"cancelled","order_ref":"A1"}`,
		"refund:cancel:B2:20261129T000000Z#1": `{"outcome":"refused","order_ref":"B2"}`,
	}
	for id, rec := range records {
		if err := n.Notify(ctx, id, []byte(rec)); err != nil {
			t.Fatal(err)
		}
		if err := n.Notify(ctx, id, []byte(rec)); err != nil { // a repeat, e.g. a re-run handler
			t.Fatalf("second Notify: %v", err)
		}
	}

	d, err := NewDeliverer(Config{URL: srv.URL, Secret: []byte("whsec-1"), BaseDelay: time.Millisecond, MaxDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	first := d.NewServer(r.Opt, queue, 1)
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-rc.calls:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery attempt within 10s")
	}
	first.Shutdown() // the restart: the retry waits in Redis meanwhile

	second := d.NewServer(r.Opt, queue, 2)
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	defer second.Shutdown()
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()
	testutil.Eventually(t, 30*time.Second, "both notifications delivered and completed", func() bool {
		qi, err := insp.GetQueueInfo(queue)
		return err == nil && qi.Completed == len(records)
	})
	delivered, bad := rc.snapshot()
	if len(bad) > 0 {
		t.Errorf("receiver refused signatures: %v", bad)
	}
	for id, rec := range records {
		if got := delivered[id]; len(got) != 1 || got[0] != rec {
			t.Errorf("delivery %s: got %q, want exactly one %q", id, got, rec)
		}
	}
}

// TestDeliveryGivesUpAfterMaxAge: a notification older than MaxAge is
// archived with a reason, not retried for ever.
func TestDeliveryGivesUpAfterMaxAge(t *testing.T) {
	r := redistest.New(t)
	queue := r.Queue(t)
	rc := newReceiver("s", 1000)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	n := NewNotifier(r.Opt, queue, time.Hour, func() time.Time { return time.Now().Add(-25 * time.Hour) })
	defer n.Close()
	if err := n.Notify(context.Background(), "refund:cancel:OLD:20261129T000000Z", []byte(`{"outcome":"cancelled"}`)); err != nil {
		t.Fatal(err)
	}
	d, err := NewDeliverer(Config{URL: srv.URL, Secret: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	s := d.NewServer(r.Opt, queue, 1)
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown()
	insp := asynq.NewInspector(r.Opt)
	defer insp.Close()
	var info *asynq.TaskInfo
	testutil.Eventually(t, 10*time.Second, "the stale notification archived", func() bool {
		info, err = insp.GetTaskInfo(queue, TaskID("refund:cancel:OLD:20261129T000000Z"))
		return err == nil && info.State == asynq.TaskStateArchived
	})
	if !strings.Contains(info.LastErr, "not delivered within 24h") {
		t.Errorf("archived with %q, want the age named", info.LastErr)
	}
	if len(rc.calls) != 0 {
		t.Errorf("a stale notification was still POSTed")
	}
}

// TestDeliveryOverVerifiedTLS: an https receiver is reached when its CA is
// trusted, and refused when it is not (TLS is always verified).
func TestDeliveryOverVerifiedTLS(t *testing.T) {
	rc := newReceiver("s", 0)
	srv := httptest.NewTLSServer(rc)
	defer srv.Close()
	n := notification{ID: "x", CreatedAt: time.Now(), Record: []byte(`{"outcome":"cancelled"}`)}

	untrusted, err := NewDeliverer(Config{URL: srv.URL, Secret: []byte("s")})
	if err != nil {
		t.Fatal(err)
	}
	if err := untrusted.post(context.Background(), n); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("untrusted certificate: post = %v, want a certificate error", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	trusted, err := NewDeliverer(Config{URL: srv.URL, Secret: []byte("s"), RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	if err := trusted.post(context.Background(), n); err != nil {
		t.Fatalf("trusted certificate: %v", err)
	}
	if d, _ := rc.snapshot(); len(d["x"]) != 1 {
		t.Fatalf("delivered %v", d)
	}
}

func TestNewDelivererRefusesBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"plain http to a remote host": {URL: "http://hooks.example.com/x", Secret: []byte("s")},
		"no secret":                   {URL: "https://hooks.example.com/x"},
	} {
		if _, err := NewDeliverer(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "s\"") {
			t.Errorf("%s: error %q shows the secret", name, err)
		}
	}
}
