// Package rpctest is a sandbox 2Checkout JSON-RPC 6.0 server, in the spirit of
// net/http/httptest: tests, the demo and benchmarks start one in-process, and
// cmd/fake2co serves the same handler as a program.
//
// It speaks the protocol as the vendor documents it (see package rpcclient for
// the error names and codes), keeps a refund state machine, records every call
// in a ledger, injects faults on demand, and takes an injected clock so tests
// move time instead of waiting for it.
//
// # Choices where 2Checkout is silent
//
//   - JSON-RPC errors are answered with HTTP 200 and an error object
//     {"code","message","data":{"error_code"}}; a non-POST request gets 405 and
//     a body over the limit 413, both with a JSON-RPC error body.
//   - The error codes of cancelRefund, getOrder and issueRefund are this
//     project's (rpcclient.Name*): INVALID_ORDER_REFERENCE 20001,
//     ORDER_NOT_FOUND 20002, NO_REFUND 20003, REFUND_NOT_CANCELLABLE 20004,
//     REFUND_WINDOW_EXPIRED 20005, PENDING_REFUND_EXISTS 20006,
//     ORDER_CANCELED 20007, ORDER_NOT_REFUNDABLE 20008. A bad login is
//     AUTHENTICATION_FAILED 10003; a missing or unknown session FORBIDDEN
//     10000 / INVALID_SESSION 10001; an expired one SESSION_EXPIRED 10002.
//   - Sessions live a fixed SessionTTL from login (not sliding).
//   - cancelRefund answers the RefundID as a string.
//   - getOrder adds RefundID, RefundStatus and RefundInitiatedAt to the order
//     (2Checkout has no documented way to read a refund's status).
//   - An order reference is 1 to 32 characters of letters, digits, '-' and '_'.
//
// With Config.DocumentedOnly the sandbox drops its own inventions: error
// objects carry only code and message, and getOrder has no refund fields.
// The fault kind rpc_error answers any error object a test names.
package rpctest

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/refundd/refund-canceller/internal/clip"
	"github.com/refundd/refund-canceller/internal/defaults"
	"github.com/refundd/refund-canceller/internal/orderref"
	"github.com/refundd/refund-canceller/rpcclient"
)

// Refund statuses.
const (
	StatusPending   = "PENDING"
	StatusApproved  = "APPROVED"
	StatusCanceled  = "CANCELED"
	StatusCompleted = "COMPLETED"
	// StatusNone seeds an order that has no refund.
	StatusNone = "NONE"
)

// Order statuses (getOrder's Status).
const (
	OrderComplete = "COMPLETE"
	OrderRefund   = "REFUND"
	OrderCanceled = "CANCELED"
)

// Config configures a Sandbox. Zero values mean the defaults beside them.
type Config struct {
	// MerchantCode and SecretKey are the credentials login accepts.
	// Defaults "SANDBOX" and "sandbox-secret".
	MerchantCode string
	SecretKey    string
	// SessionTTL is a session's fixed lifetime from login. Default 10m.
	SessionTTL time.Duration
	// DateSkew is how far login's date may be from the server's clock. Default 10m.
	DateSkew time.Duration
	// Window is how long after initiation a refund may be cancelled. Default 2h.
	Window time.Duration
	// MaxBodyBytes caps a request body. Default 64 KiB.
	MaxBodyBytes int64
	// FaultSeed seeds the fault dice so runs are reproducible. Default 1.
	FaultSeed int64
	// DocumentedOnly makes the sandbox speak only what 2Checkout documents:
	// error objects carry code and message but no data.error_code, and
	// getOrder answers the order without the refund fields (RefundID,
	// RefundStatus, RefundInitiatedAt), as 2Checkout has no documented way
	// to read a refund's status. Clients must then do without the names.
	DocumentedOnly bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger logs calls at debug level. Default zap.NewNop().
	Logger *zap.Logger
}

// Defaults of Config.
const (
	DefaultMerchantCode = "SANDBOX"
	DefaultSecretKey    = "sandbox-secret"
	DefaultSessionTTL   = 10 * time.Minute
	DefaultDateSkew     = 10 * time.Minute
	DefaultWindow       = 2 * time.Hour
	DefaultMaxBodyBytes = 64 << 10
)

// Refund is an order with its refund, as seeded and as GET /admin/refunds shows it.
type Refund struct {
	OrderRef    string    `json:"order_ref"`
	Status      string    `json:"status"` // refund status, or NONE
	InitiatedAt time.Time `json:"initiated_at"`
	RefundID    string    `json:"refund_id,omitempty"`
	OrderStatus string    `json:"order_status,omitempty"`
	CanceledAt  time.Time `json:"canceled_at,omitzero"`
}

// Call is one ledger entry: one RPC call as it arrived.
type Call struct {
	Time     time.Time `json:"time"`
	Method   string    `json:"method"`
	OrderRef string    `json:"order_ref,omitempty"`
	// Outcome is "ok", an error name, or "not_applied" when a fault answered
	// in the server's place.
	Outcome string `json:"outcome"`
	// InWindow, for cancelRefund on an order with a refund: whether the call
	// arrived before the refund's window closed.
	InWindow *bool `json:"in_window,omitempty"`
	// Fault names the fault kind that touched this call, if any.
	Fault string `json:"fault,omitempty"`
}

// MarshalJSON writes Time with nanoseconds.
func (c Call) MarshalJSON() ([]byte, error) {
	type plain Call
	return json.Marshal(struct {
		plain
		Time string `json:"time"`
	}{plain(c), c.Time.UTC().Format(time.RFC3339Nano)})
}

// Stats counts logins and calls by method and outcome.
type Stats struct {
	Logins int                       `json:"logins"`
	Calls  map[string]map[string]int `json:"calls"`
}

// Sandbox is the sandbox server's handler and state. It is safe for
// concurrent use. Serve it with NewServer (tests) or any http.Server.
type Sandbox struct {
	cfg    Config
	log    *zap.Logger
	mux    *http.ServeMux
	closed chan struct{}
	once   sync.Once

	inFlight atomic.Int64 // RPC requests being served now

	mu       sync.Mutex
	orders   map[string]*Refund
	sessions map[string]time.Time // session ID → expiry
	ledger   []Call
	logins   int
	calls    map[string]map[string]int
	faults   *faultSet
}

// New validates cfg and returns an empty Sandbox.
func New(cfg Config) (*Sandbox, error) {
	if cfg.MerchantCode == "" {
		cfg.MerchantCode = DefaultMerchantCode
	}
	if cfg.SecretKey == "" {
		cfg.SecretKey = DefaultSecretKey
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"SessionTTL", &cfg.SessionTTL, DefaultSessionTTL}, {"DateSkew", &cfg.DateSkew, DefaultDateSkew}, {"Window", &cfg.Window, DefaultWindow}} {
		if err := defaults.Fill(d.name, d.v, d.def); err != nil {
			return nil, fmt.Errorf("rpctest: %w", err)
		}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.FaultSeed == 0 {
		cfg.FaultSeed = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	s := &Sandbox{
		cfg:      cfg,
		log:      cfg.Logger,
		closed:   make(chan struct{}),
		orders:   make(map[string]*Refund),
		sessions: make(map[string]time.Time),
		calls:    make(map[string]map[string]int),
		faults:   newFaultSet(cfg.FaultSeed, cfg.Now),
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("/rpc/6.0", s.serveRPC)
	s.mux.HandleFunc("/rpc/6.0/", s.serveRPC)
	s.routeAdmin(s.mux)
	return s, nil
}

// Config answers the effective configuration.
func (s *Sandbox) Config() Config { return s.cfg }

// ServeHTTP serves /rpc/6.0/ and /admin/.
func (s *Sandbox) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Close releases requests held by a hang fault. The Sandbox keeps answering
// other requests.
func (s *Sandbox) Close() { s.once.Do(func() { close(s.closed) }) }

// Seed adds or replaces orders with their refunds. A refund without an ID
// gets one; a zero InitiatedAt means now.
func (s *Sandbox) Seed(refunds ...Refund) error {
	now := s.cfg.Now()
	prepared := make([]*Refund, 0, len(refunds))
	for i, r := range refunds {
		if !orderref.Valid(r.OrderRef) {
			return fmt.Errorf("refund %d: order_ref %q: want %s", i, r.OrderRef, orderref.Want)
		}
		switch r.Status {
		case "":
			r.Status = StatusPending
		case StatusPending, StatusApproved, StatusCanceled, StatusCompleted, StatusNone:
		default:
			return fmt.Errorf("refund %d: status %q: want PENDING, APPROVED, CANCELED, COMPLETED or NONE", i, r.Status)
		}
		if r.InitiatedAt.IsZero() && r.Status != StatusNone {
			r.InitiatedAt = now
		}
		if r.RefundID == "" && r.Status != StatusNone {
			r.RefundID = "RF-" + r.OrderRef
		}
		switch r.OrderStatus {
		case "":
			r.OrderStatus = OrderComplete
			if r.Status == StatusCompleted {
				r.OrderStatus = OrderRefund
			}
		case OrderComplete, OrderRefund, OrderCanceled:
		default:
			return fmt.Errorf("refund %d: order_status %q: want COMPLETE, REFUND or CANCELED", i, r.OrderStatus)
		}
		r.InitiatedAt = r.InitiatedAt.UTC()
		prepared = append(prepared, &r)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range prepared {
		s.orders[r.OrderRef] = r
	}
	return nil
}

// Refund answers the state of an order and its refund.
func (s *Sandbox) Refund(orderRef string) (Refund, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.orders[orderRef]
	if !ok {
		return Refund{}, false
	}
	return *r, true
}

// InFlight answers how many RPC requests are being served right now (held
// by a latency or hang fault, say). The ledger records a call when it ends.
func (s *Sandbox) InFlight() int { return int(s.inFlight.Load()) }

// Ledger answers a copy of every RPC call so far, in arrival order.
func (s *Sandbox) Ledger() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.ledger...)
}

// Stats answers the counts of logins and calls.
func (s *Sandbox) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{Logins: s.logins, Calls: make(map[string]map[string]int, len(s.calls))}
	for m, byOutcome := range s.calls {
		st.Calls[m] = make(map[string]int, len(byOutcome))
		for o, n := range byOutcome {
			st.Calls[m][o] = n
		}
	}
	return st
}

// SetFaults replaces the fault rules; none clears them.
func (s *Sandbox) SetFaults(rules ...FaultRule) error {
	for i := range rules {
		if err := rules[i].validate(); err != nil {
			return fmt.Errorf("fault %d: %w", i, err)
		}
	}
	s.faults.set(rules)
	return nil
}

// Faults answers the fault rules in force.
func (s *Sandbox) Faults() []FaultRule { return s.faults.rules() }

// rpcError is an error answer of the sandbox.
type rpcError struct {
	name string
	msg  string
}

func errNamed(name, format string, a ...any) *rpcError {
	return &rpcError{name: name, msg: fmt.Sprintf(format, a...)}
}

type rpcRequest struct {
	JSONRPC string            `json:"jsonrpc"`
	Method  string            `json:"method"`
	Params  []json.RawMessage `json:"params"`
	ID      json.RawMessage   `json:"id"`
}

// DecodeRequest parses a JSON-RPC request body. It never panics; a bad body
// gives an error named PARSE_ERROR or INVALID_REQUEST.
func DecodeRequest(body []byte) (method string, params []json.RawMessage, id json.RawMessage, err error) {
	var req rpcRequest
	if e := json.Unmarshal(body, &req); e != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(e, &ute) {
			return "", nil, nil, errNamed(rpcclient.NameInvalidRequest, "invalid request: %s", ute.Error())
		}
		return "", nil, nil, errNamed(rpcclient.NameParseError, "parse error: %s", e.Error())
	}
	if req.Method == "" {
		return "", nil, req.ID, errNamed(rpcclient.NameInvalidRequest, "invalid request: method is missing")
	}
	var n json.Number
	if len(req.ID) == 0 || json.Unmarshal(req.ID, &n) != nil || strings.ContainsAny(n.String(), ".eE") {
		return req.Method, nil, nil, errNamed(rpcclient.NameInvalidRequest, "invalid request: id must be an integer")
	}
	return req.Method, req.Params, req.ID, nil
}

func (e *rpcError) Error() string { return e.name + ": " + e.msg }

func (s *Sandbox) serveRPC(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeRPC(w, http.StatusMethodNotAllowed, nil, nil, errNamed(rpcclient.NameInvalidRequest, "method %s not allowed; use POST", r.Method), s.cfg.DocumentedOnly)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err != nil {
		writeRPC(w, http.StatusRequestEntityTooLarge, nil, nil, errNamed(rpcclient.NameInvalidRequest, "request body over %d bytes", s.cfg.MaxBodyBytes), s.cfg.DocumentedOnly)
		return
	}
	method, params, id, derr := DecodeRequest(body)
	if derr != nil {
		writeRPC(w, http.StatusOK, id, nil, derr.(*rpcError), s.cfg.DocumentedOnly)
		return
	}
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	act := s.faults.match(method)
	now := s.cfg.Now()
	if act.latency > 0 {
		select {
		case <-time.After(act.latency):
		case <-r.Context().Done():
		case <-s.closed:
		}
	}
	if act.answer != nil { // the fault answers instead of the server
		s.record(Call{Time: now, Method: method, OrderRef: orderRefParam(method, params), Outcome: "not_applied", Fault: act.kind})
		act.answer(w, r, id, s.closed)
		return
	}
	if act.expireSession && len(params) > 0 && method != rpcclient.MethodLogin {
		var sid string
		if json.Unmarshal(params[0], &sid) == nil {
			s.mu.Lock()
			if _, ok := s.sessions[sid]; ok {
				s.sessions[sid] = now
			}
			s.mu.Unlock()
		}
	}
	result, call, rerr := s.dispatch(now, method, params)
	call.Fault = act.kind
	s.record(call)
	if act.after != nil { // apply, then lose the answer
		act.after(w, r)
		return
	}
	writeRPC(w, http.StatusOK, id, result, rerr, s.cfg.DocumentedOnly)
}

func orderRefParam(method string, params []json.RawMessage) string {
	if method == rpcclient.MethodLogin || len(params) < 2 {
		return ""
	}
	var ref string
	_ = json.Unmarshal(params[1], &ref)
	return ref
}

func (s *Sandbox) record(c Call) {
	s.mu.Lock()
	s.ledger = append(s.ledger, c)
	m := s.calls[c.Method]
	if m == nil {
		m = make(map[string]int)
		s.calls[c.Method] = m
	}
	m[c.Outcome]++
	s.mu.Unlock()
	s.log.Debug("rpc call", zap.String("method", c.Method), zap.String("order_ref", c.OrderRef), zap.String("outcome", c.Outcome), zap.String("fault", c.Fault))
}

// dispatch runs one call against the state and describes it for the ledger.
func (s *Sandbox) dispatch(now time.Time, method string, params []json.RawMessage) (any, Call, *rpcError) {
	call := Call{Time: now, Method: method}
	result, rerr := s.run(now, method, params, &call)
	call.Outcome = "ok"
	if rerr != nil {
		call.Outcome = rerr.name
	}
	return result, call, rerr
}

func (s *Sandbox) run(now time.Time, method string, params []json.RawMessage, call *Call) (any, *rpcError) {
	switch method {
	case rpcclient.MethodLogin:
		return s.login(now, params)
	case rpcclient.MethodCancelRefund, rpcclient.MethodGetOrder, rpcclient.MethodIssueRefund:
	default:
		return nil, errNamed(rpcclient.NameMethodNotFound, "method %q not found", method)
	}
	var sid, ref string
	if len(params) < 2 || json.Unmarshal(params[0], &sid) != nil || json.Unmarshal(params[1], &ref) != nil {
		return nil, errNamed(rpcclient.NameInvalidParams, "%s wants (sessionID, orderReference, …) as strings", method)
	}
	call.OrderRef = ref
	s.mu.Lock()
	defer s.mu.Unlock()
	if rerr := s.checkSession(now, sid); rerr != nil {
		return nil, rerr
	}
	if !orderref.Valid(ref) {
		return nil, errNamed(rpcclient.NameInvalidOrderReference, "invalid order reference %q", clip.String(ref, 40))
	}
	o, ok := s.orders[ref]
	if !ok {
		return nil, errNamed(rpcclient.NameOrderNotFound, "order %s not found", ref)
	}
	switch method {
	case rpcclient.MethodCancelRefund:
		if len(params) > 2 {
			return nil, errNamed(rpcclient.NameInvalidParams, "cancelRefund wants (sessionID, orderReference)")
		}
		return s.cancelRefund(now, o, call)
	case rpcclient.MethodGetOrder:
		return orderView(o, s.cfg.DocumentedOnly), nil
	default:
		return s.issueRefund(now, o, params)
	}
}

func (s *Sandbox) login(now time.Time, params []json.RawMessage) (any, *rpcError) {
	if len(params) != 3 && len(params) != 4 {
		return nil, errNamed(rpcclient.NameInvalidParams, "login wants (merchantCode, date, hash[, algorithm])")
	}
	var code, date, hash, algo string
	for i, p := range []*string{&code, &date, &hash, &algo}[:len(params)] {
		if json.Unmarshal(params[i], p) != nil {
			return nil, errNamed(rpcclient.NameInvalidParams, "login param %d must be a string", i+1)
		}
	}
	if algo == "" {
		algo = rpcclient.HashMD5
	}
	if algo != rpcclient.HashMD5 && algo != rpcclient.HashSHA256 {
		return nil, errNamed(rpcclient.NameAuthenticationFailed, "Authentication failed: unknown hash algorithm")
	}
	t, err := time.Parse(rpcclient.DateLayout, date)
	if err != nil {
		return nil, errNamed(rpcclient.NameAuthenticationFailed, "Authentication failed: date must be UTC YYYY-MM-DD HH:MM:SS")
	}
	if d := now.Sub(t); d > s.cfg.DateSkew || d < -s.cfg.DateSkew {
		return nil, errNamed(rpcclient.NameAuthenticationFailed, "Authentication failed: date %s is more than %v from server time", date, s.cfg.DateSkew)
	}
	want, _ := rpcclient.LoginHash(algo, s.cfg.MerchantCode, date, []byte(s.cfg.SecretKey))
	if code != s.cfg.MerchantCode || !hmac.Equal([]byte(want), []byte(strings.ToLower(hash))) {
		return nil, errNamed(rpcclient.NameAuthenticationFailed, "Authentication failed")
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	sid := hex.EncodeToString(b[:])
	s.mu.Lock()
	for id, exp := range s.sessions { // keep the map small: drop the expired
		if !now.Before(exp) {
			delete(s.sessions, id)
		}
	}
	s.sessions[sid] = now.Add(s.cfg.SessionTTL)
	s.logins++
	s.mu.Unlock()
	return sid, nil
}

// checkSession must be called with s.mu held.
func (s *Sandbox) checkSession(now time.Time, sid string) *rpcError {
	if sid == "" {
		return errNamed(rpcclient.NameForbidden, "Forbidden area: no session")
	}
	exp, ok := s.sessions[sid]
	if !ok {
		return errNamed(rpcclient.NameInvalidSession, "Invalid session")
	}
	if !now.Before(exp) {
		return errNamed(rpcclient.NameSessionExpired, "Session expired")
	}
	return nil
}

// cancelRefund must be called with s.mu held.
func (s *Sandbox) cancelRefund(now time.Time, o *Refund, call *Call) (any, *rpcError) {
	if o.Status == StatusNone {
		return nil, errNamed(rpcclient.NameNoRefund, "order %s has no refund", o.OrderRef)
	}
	closes := o.InitiatedAt.Add(s.cfg.Window)
	in := now.Before(closes)
	call.InWindow = &in
	if o.Status != StatusPending && o.Status != StatusApproved {
		return nil, errNamed(rpcclient.NameRefundNotCancellable, "refund of order %s is %s; only PENDING or APPROVED refunds can be cancelled", o.OrderRef, o.Status)
	}
	if !in {
		return nil, errNamed(rpcclient.NameRefundWindowExpired, "refund of order %s was initiated at %s; it could be cancelled until %s", o.OrderRef, o.InitiatedAt.Format(time.RFC3339), closes.Format(time.RFC3339))
	}
	o.Status = StatusCanceled
	o.CanceledAt = now
	return o.RefundID, nil
}

// issueRefund must be called with s.mu held.
func (s *Sandbox) issueRefund(now time.Time, o *Refund, params []json.RawMessage) (any, *rpcError) {
	if len(params) > 6 {
		return nil, errNamed(rpcclient.NameInvalidParams, "issueRefund wants (sessionID, orderReference, amount, items, comment, reason)")
	}
	switch {
	case o.OrderStatus == OrderCanceled:
		return nil, errNamed(rpcclient.NameOrderCanceled, "Order already canceled")
	case o.Status == StatusPending || o.Status == StatusApproved:
		return nil, errNamed(rpcclient.NamePendingRefundExists, "You already have a pending refund request.")
	case o.OrderStatus != OrderComplete:
		return nil, errNamed(rpcclient.NameOrderNotRefundable, "order %s is %s, not COMPLETE", o.OrderRef, o.OrderStatus)
	}
	o.Status, o.InitiatedAt, o.RefundID, o.CanceledAt = StatusPending, now, "RF-"+o.OrderRef+"-"+fmt.Sprint(now.UnixNano()), time.Time{}
	return true, nil
}

func orderView(o *Refund, documentedOnly bool) rpcclient.Order {
	v := rpcclient.Order{RefNo: o.OrderRef, Status: o.OrderStatus, ApproveStatus: "OK"}
	if o.Status != StatusNone && !documentedOnly {
		v.RefundID, v.RefundStatus, v.RefundInitiatedAt = o.RefundID, o.Status, o.InitiatedAt.Format(time.RFC3339Nano)
	}
	return v
}

type wireError struct {
	Code    int       `json:"code"`
	Message string    `json:"message"`
	Data    *wireData `json:"data,omitempty"`
}

type wireData struct {
	ErrorCode string `json:"error_code"`
}

type wireResponse struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Result  any             `json:"result,omitempty"`
	Error   *wireError      `json:"error,omitempty"`
}

// writeRPC answers a result or the sandbox's error; documentedOnly leaves
// out data.error_code.
func writeRPC(w http.ResponseWriter, status int, id json.RawMessage, result any, rerr *rpcError, documentedOnly bool) {
	var we *wireError
	if rerr != nil {
		code, _ := rpcclient.CodeOf(rerr.name)
		we = &wireError{Code: code, Message: rerr.msg}
		if !documentedOnly {
			we.Data = &wireData{ErrorCode: rerr.name}
		}
	}
	writeWire(w, status, id, result, we)
}

func writeWire(w http.ResponseWriter, status int, id json.RawMessage, result any, we *wireError) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	resp := wireResponse{JSONRPC: "2.0", ID: id, Result: result, Error: we}
	if we != nil {
		resp.Result = nil
	}
	b, _ := json.Marshal(resp)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
