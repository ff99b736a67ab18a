// Package clip shortens untrusted text before it goes into an error, a log
// line or a page: one rule for rpcclient, the sandbox and the ops server.
package clip

import "unicode/utf8"

// String answers s if it is at most n bytes long; otherwise its first n bytes
// or fewer, cut at a rune boundary so the result stays valid UTF-8, followed
// by "…".
func String(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
