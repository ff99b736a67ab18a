package tasks

// The payload as producers write it — one object of the known fields, each
// once, string values without escapes — is read here in one pass without
// reflection; anything else (and any problem) goes to decodeTokens, which
// reads it again and names every problem. The fast path decides nothing
// of its own: the values go through stringValue, timeValue and check, and
// FuzzDecode holds its answers equal to decodeTokens' on every input.

// decodePlain answers the payload and true if b is a plain payload
// (scanPlain) that is valid; false sends b to the full decoder.
func decodePlain(b []byte) (CancelRefund, bool) {
	var p CancelRefund
	vals, ok := scanPlain(b)
	if !ok {
		return p, false
	}
	var problems [len(knownFields)]string
	if v := vals[0]; v != nil {
		p.OrderRef, problems[0] = stringValue(v)
	}
	if v := vals[1]; v != nil {
		p.RefundInitiatedAt, problems[1] = timeValue(v)
	}
	if v := vals[2]; v != nil {
		p.Reason, problems[2] = stringValue(v)
	}
	if v := vals[3]; v != nil {
		p.RequestedBy, problems[3] = stringValue(v)
	}
	for _, problem := range problems {
		if problem != "" {
			return p, false
		}
	}
	if p.check(nil) != nil {
		return p, false
	}
	return p, true
}

// scanPlain splits b, if it is one JSON object (whitespace around its
// tokens allowed) whose keys are knownFields without escapes, each at most
// once, and whose values are strings without escapes or control
// characters, or null: vals[i] is the raw value of knownFields[i], nil if
// absent. Anything else answers false.
func scanPlain(b []byte) (vals [len(knownFields)][]byte, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return vals, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return vals, skipSpace(b, i+1) == len(b)
	}
	for {
		key, next, ok := plainToken(b, i)
		if !ok || len(key) < 2 || key[0] != '"' {
			return vals, false
		}
		field := -1
		for f, name := range knownFields {
			if string(key[1:len(key)-1]) == name {
				field = f
			}
		}
		if field < 0 || vals[field] != nil {
			return vals, false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return vals, false
		}
		if vals[field], next, ok = plainToken(b, skipSpace(b, i+1)); !ok {
			return vals, false
		}
		i = skipSpace(b, next)
		if i >= len(b) {
			return vals, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return vals, skipSpace(b, i+1) == len(b)
		default:
			return vals, false
		}
	}
}

// plainToken reads, at b[i], a string without escapes or control
// characters (quotes included) or null, and the index after it.
func plainToken(b []byte, i int) (tok []byte, next int, ok bool) {
	if i+4 <= len(b) && string(b[i:i+4]) == "null" {
		return b[i : i+4], i + 4, true
	}
	if i >= len(b) || b[i] != '"' {
		return nil, i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			return b[i : j+1], j + 1, true
		case c == '\\' || c < 0x20:
			return nil, i, false
		}
	}
	return nil, i, false
}

// plainString answers the value of a raw JSON string without escapes or
// control characters (valid UTF-8, as decode checks first): its bytes
// between the quotes. Any other raw value answers false.
func plainString(raw []byte) (string, bool) {
	tok, next, ok := plainToken(raw, 0)
	if !ok || next != len(raw) || tok[0] != '"' {
		return "", false
	}
	return string(raw[1 : len(raw)-1]), true
}

// skipSpace answers the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
