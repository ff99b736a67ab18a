// Package orderref holds the one rule for what a 2Checkout order reference
// may look like, shared by the task contract (package tasks) and the
// sandbox server (package rpctest).
package orderref

import "regexp"

// Want describes a valid reference, for error messages.
const Want = "1-32 letters, digits, '-' or '_'"

var re = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Valid reports whether ref is a well-formed order reference: Want.
func Valid(ref string) bool { return re.MatchString(ref) }
