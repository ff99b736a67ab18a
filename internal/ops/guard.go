package ops

import (
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/refundd/refund-canceller/internal/clip"
)

// Guard refuses requests the ops server must not serve, before any handler
// sees them:
//
//   - a Host header that is not the server's own (DNS rebinding: a web page
//     on attacker.example whose name now resolves to 127.0.0.1 reaches the
//     loopback server with "Host: attacker.example"). Allowed are localhost,
//     any IP address (a rebinding page always sends its own name) and the
//     names given (OPS_ALLOWED_HOSTS). Answer: 403.
//   - a state-changing request (anything but GET, HEAD, OPTIONS) that a
//     browser marks as coming from another origin (Sec-Fetch-Site, else
//     Origin against Host): a page elsewhere riding on the operator's cached
//     dashboard credentials. Answer: 403. Clients that are not browsers send
//     neither header and are not affected.
type Guard struct {
	hosts map[string]bool
	cop   *http.CrossOriginProtection
}

// NewGuard returns a Guard that also allows the host names in allowedHosts
// (compared without port and letter case).
func NewGuard(allowedHosts []string) *Guard {
	g := &Guard{hosts: map[string]bool{"localhost": true}, cop: http.NewCrossOriginProtection()}
	for _, h := range allowedHosts {
		g.hosts[normalHost(h)] = true
	}
	g.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		refuse(w, r, http.StatusForbidden, "cross-origin request refused: the ops server changes state only for its own pages")
	}))
	return g
}

// HostAllowed reports whether the ops server answers requests for host (a
// Host header: name or address, with or without port).
func (g *Guard) HostAllowed(host string) bool {
	h := normalHost(host)
	if h == "" {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	return g.hosts[h]
}

// Handler wraps next with the Host and cross-origin checks.
func (g *Guard) Handler(next http.Handler) http.Handler {
	next = g.cop.Handler(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.HostAllowed(r.Host) {
			refuse(w, r, http.StatusForbidden, "host "+clip.String(r.Host, 100)+" is not served here; add its name to OPS_ALLOWED_HOSTS")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// normalHost answers host without port, brackets, trailing dot or capitals.
func normalHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return strings.ToLower(host)
}

// refuse answers an error without reading the request's body. If a body
// was announced the connection closes right after the answer (net/http
// would otherwise read up to 256 KiB of it to reuse the connection), so a
// client cannot hold it by sending that body slowly.
func refuse(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if r.ContentLength != 0 {
		w.Header().Set("Connection", "close")
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
	}
	WriteJSON(w, status, errorBody{Error: msg})
}
