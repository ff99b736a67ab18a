package bench

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SessionID is what the no-op server answers to login.
const SessionID = "BENCH-SESSION"

// rpcServer is a JSON-RPC 6.0 server that answers at once (or after
// Latency): login with SessionID, every other method with a refund ID. It
// checks nothing and keeps no state but what the benchmark measures: logins,
// and for cancelRefund the arrival and answer times of each order reference.
type rpcServer struct {
	URL     string
	srv     *http.Server
	latency atomic.Int64 // nanoseconds

	logins atomic.Int64
	calls  atomic.Int64 // cancelRefund calls, all rounds

	mu      sync.Mutex
	want    int           // cancelRefund calls this round
	seen    int           // ... seen so far
	first   time.Time     // first arrival this round
	last    time.Time     // last answer this round
	done    chan struct{} // closed when seen reaches want
	watches map[string]chan time.Time
}

func newRPCServer() (*rpcServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &rpcServer{URL: "http://" + ln.Addr().String() + "/rpc/6.0/", watches: map[string]chan time.Time{}}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *rpcServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// SetLatency makes every answer wait d.
func (s *rpcServer) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// expect starts a round of n cancelRefund calls; the channel closes when
// the n-th has been answered.
func (s *rpcServer) expect(n int) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want, s.seen, s.first, s.last, s.done = n, 0, time.Time{}, time.Time{}, make(chan struct{})
	return s.done
}

// window answers the round's first arrival and last answer.
func (s *rpcServer) window() (first, last time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first, s.last
}

// watch answers a channel that receives the arrival time of the
// cancelRefund call for ref.
func (s *rpcServer) watch(ref string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	s.mu.Lock()
	s.watches[ref] = ch
	s.mu.Unlock()
	return ch
}

type rpcRequest struct {
	Method string            `json:"method"`
	Params []json.RawMessage `json:"params"`
	ID     json.RawMessage   `json:"id"`
}

func (s *rpcServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, err := io.ReadAll(r.Body)
	var req rpcRequest
	if err == nil {
		err = json.Unmarshal(body, &req)
	}
	if err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var ref string
	if req.Method == "cancelRefund" && len(req.Params) > 1 {
		_ = json.Unmarshal(req.Params[1], &ref)
	}
	if ref != "" {
		s.arrived(ref, arrived)
	}
	if d := time.Duration(s.latency.Load()); d > 0 {
		time.Sleep(d) // the simulated server's latency
	}
	result := strconv.Quote("R-" + ref)
	if req.Method == "login" {
		s.logins.Add(1)
		result = strconv.Quote(SessionID)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":`+string(req.ID)+`,"result":`+result+`}`)
	if ref != "" {
		s.answered(time.Now())
	}
}

func (s *rpcServer) arrived(ref string, at time.Time) {
	s.calls.Add(1)
	s.mu.Lock()
	if s.first.IsZero() {
		s.first = at
	}
	ch := s.watches[ref]
	delete(s.watches, ref)
	s.mu.Unlock()
	if ch != nil {
		ch <- at
	}
}

func (s *rpcServer) answered(at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seen++
	if at.After(s.last) {
		s.last = at
	}
	if s.seen == s.want {
		close(s.done)
	}
}

// rawPost is the minimal pipeline's call: one JSON-RPC POST, the answer read
// whole and checked for a result.
func rawPost(ctx context.Context, hc *http.Client, url, orderRef string) ([]byte, error) {
	body := `{"jsonrpc":"2.0","method":"cancelRefund","params":["` + SessionID + `",` + strconv.Quote(orderRef) + `],"id":1}`
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("cancelRefund: HTTP " + resp.Status)
	}
	return b, nil
}
