// Package loopback holds the one rule for "this host is on this machine
// only", shared by the 2Checkout client (plain http only to a loopback
// sandbox) and the configuration (a dashboard on a loopback OPS_ADDR is
// served read-only without a password), and the one way to find a free loopback port for a server of
// our own (the tests' and the soak's redis-server).
package loopback

import "net"

// Host reports whether host (a name or an IP, without port or brackets) is
// "localhost" or a loopback IP address (127.0.0.0/8, ::1).
func Host(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// FreePort answers a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
