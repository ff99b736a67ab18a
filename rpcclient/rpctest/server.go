package rpctest

import (
	"net/http/httptest"
	"sync"
	"time"
)

// Server is a Sandbox listening on a loopback port, like httptest.Server.
type Server struct {
	*Sandbox
	// URL is the server's base URL, e.g. http://127.0.0.1:41234.
	URL string
	// RPCURL is the JSON-RPC endpoint: URL + "/rpc/6.0/".
	RPCURL string

	hs *httptest.Server
}

// NewServer starts a Sandbox with cfg on a loopback port. It panics if cfg is
// invalid, as httptest.NewServer does when it cannot listen: it is for tests
// and demos. Close it when done.
func NewServer(cfg Config) *Server {
	sb, err := New(cfg)
	if err != nil {
		panic("rpctest: " + err.Error())
	}
	hs := httptest.NewServer(sb)
	return &Server{Sandbox: sb, URL: hs.URL, RPCURL: hs.URL + "/rpc/6.0/", hs: hs}
}

// CloseClientConnections closes every client connection from the server's
// side, as httptest.Server's does: a held request then ends as if its
// client had gone away (a latency-held cancelRefund is applied).
func (s *Server) CloseClientConnections() { s.hs.CloseClientConnections() }

// Close releases hanging requests and shuts the server down.
func (s *Server) Close() {
	s.Sandbox.Close()
	s.hs.CloseClientConnections()
	s.hs.Close()
}

// Clock is a settable clock for tests: pass its Now as Config.Now.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now answers the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set sets the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}
