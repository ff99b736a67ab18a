// Package loopback holds the one rule for "this host is on this machine
// only", shared by the 2Checkout client (plain http only to a loopback
// sandbox) and the configuration (a dashboard on a loopback OPS_ADDR needs no
// password).
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
