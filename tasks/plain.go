package tasks

import "github.com/refundd/refund-canceller/internal/plainjson"

// decodePlain reads the payload as producers write it — one object of the
// known fields, each once, string values without escapes — in one pass
// without reflection (plainjson). It answers false for anything else and
// for any problem, and decodeTokens then reads b again and names every
// problem. It decides nothing of its own: the values go through
// stringValue, timeValue and check, and FuzzDecode holds its answers equal
// to decodeTokens' on every input.
func decodePlain(b []byte) (CancelRefund, bool) {
	var p CancelRefund
	var vals [len(knownFields)][]byte
	if !plainjson.Object(b, knownFields[:], vals[:]) {
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
