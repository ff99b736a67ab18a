// Package plainjson reads and writes, in one pass and without reflection,
// the JSON this service handles most: it reads a flat object with known
// keys and scalar values without escapes (a task's payload, 2Checkout's
// answer to cancelRefund), and writes strings byte for byte as
// encoding/json does (a JSON-RPC request, a task's result record).
// Anything else answers false, or goes through encoding/json — so a fast
// path never decides or writes anything encoding/json would not; each
// caller's fuzz test holds the two to the same answers and bytes.
package plainjson

import (
	"encoding/json"
	"unicode/utf8"
)

// AppendString appends s as a JSON string exactly as encoding/json writes
// it: printable ASCII that needs no escape (encoding/json escapes <, > and
// & too) as it is, any other string through json.Marshal.
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			j, _ := json.Marshal(s) // a string always encodes
			return append(b, j...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// Object splits b if it is one JSON object (whitespace allowed around its
// tokens) whose keys are among keys, written without escapes, each at most
// once, and whose values are scalars: strings without escapes or control
// characters, null, true, false, or integers. vals[i] is set to the raw
// value of keys[i] (a slice of b), nil if absent; len(vals) must be
// len(keys). Anything else answers false, with vals in no defined state.
// b's UTF-8 is not checked.
func Object(b []byte, keys []string, vals [][]byte) bool {
	clear(vals)
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return skipSpace(b, i+1) == len(b)
	}
	for {
		key, next, ok := scalar(b, i)
		if !ok || key[0] != '"' {
			return false
		}
		k := -1
		for j, name := range keys {
			if string(key[1:len(key)-1]) == name {
				k = j
				break
			}
		}
		if k < 0 || vals[k] != nil {
			return false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		if vals[k], next, ok = scalar(b, skipSpace(b, i+1)); !ok {
			return false
		}
		i = skipSpace(b, next)
		if i >= len(b) {
			return false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return skipSpace(b, i+1) == len(b)
		default:
			return false
		}
	}
}

// String answers the value of raw if it is a JSON string in valid UTF-8
// without escapes or control characters: the bytes between its quotes.
// Anything else answers false.
func String(raw []byte) (string, bool) {
	tok, next, ok := scalar(raw, 0)
	if !ok || next != len(raw) || tok[0] != '"' || !utf8.Valid(raw) {
		return "", false
	}
	return string(raw[1 : len(raw)-1]), true
}

// scalar reads, at b[i], a plain scalar (see Object) and answers it and
// the index after it.
func scalar(b []byte, i int) (tok []byte, next int, ok bool) {
	if i >= len(b) {
		return nil, i, false
	}
	switch c := b[i]; {
	case c == '"':
		for j := i + 1; j < len(b); j++ {
			switch c := b[j]; {
			case c == '"':
				return b[i : j+1], j + 1, true
			case c == '\\' || c < 0x20:
				return nil, i, false
			}
		}
		return nil, i, false
	case c == 'n' || c == 't' || c == 'f':
		for _, lit := range [...]string{"null", "true", "false"} {
			if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
				return b[i : i+len(lit)], i + len(lit), true
			}
		}
		return nil, i, false
	case c == '-' || '0' <= c && c <= '9':
		j := i
		if c == '-' {
			j++
		}
		switch {
		case j < len(b) && b[j] == '0':
			j++
		case j < len(b) && '1' <= b[j] && b[j] <= '9':
			for j < len(b) && '0' <= b[j] && b[j] <= '9' {
				j++
			}
		default:
			return nil, i, false
		}
		if j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
			return nil, i, false // fractions and exponents: the full decoder
		}
		return b[i:j], j, true
	}
	return nil, i, false
}

// skipSpace answers the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
