// Package orderref holds the one rule for what a 2Checkout order reference
// may look like, shared by the task contract (package tasks) and the
// sandbox server (package rpctest).
package orderref

// Want describes a valid reference, for error messages.
const Want = "1-32 letters, digits, '-' or '_'"

// Valid reports whether ref is a well-formed order reference: Want.
func Valid(ref string) bool {
	if len(ref) < 1 || len(ref) > 32 {
		return false
	}
	for i := 0; i < len(ref); i++ {
		switch c := ref[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}
