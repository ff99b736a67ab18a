package tasks_test

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/refundd/refund-canceller/tasks"
)

// fuzzTime makes a time from fuzz input: 0 is the zero time (omitted);
// other seconds get nanoseconds of their own and a fixed zone of off
// seconds (any offset, so zones JSON cannot write occur too).
func fuzzTime(sec int64, off int32) time.Time {
	if sec == 0 {
		return time.Time{}
	}
	return time.Unix(sec, sec%1e9).In(time.FixedZone("", int(off)))
}

// FuzzEncodeResult holds EncodeResult to json.Marshal: the same bytes, or
// both an error, for every record.
func FuzzEncodeResult(f *testing.F) {
	f.Add("cancelled", "73152889", "", 0, "", "R-1", 1, false, int64(1764064800), int32(0), int64(0), "", 0, 0, int64(0))
	f.Add("unknown", "A<&>\"\\", "line\nbreak \u2028 é \xff", -20002, "ORDER_NOT_FOUND", "", 7, true,
		int64(1764064800), int32(3600), int64(1764072000), "a timeout mid-call", 2, 6, int64(1764065800))
	f.Add("retry", "", "", 0, "", "", 0, false, int64(253402300800), int32(0), int64(0), "", 0, 0, int64(0))   // year 10000
	f.Add("retry", "", "", 0, "", "", 0, false, int64(1764064800), int32(86400), int64(0), "", 0, 0, int64(0)) // zone hour 24
	f.Add("retry", "", "", 0, "", "", -1, false, int64(-62135596800), int32(-59), int64(-1), "", -3, -1, int64(1))
	f.Fuzz(func(t *testing.T, outcome, orderRef, reason string, code int, vendorError, refundID string, attempts int, confirmed bool,
		finished int64, off int32, closes int64, maybe string, unknown, retried int, next int64) {
		r := &tasks.Result{Outcome: outcome, OrderRef: orderRef, Reason: reason, VendorCode: code, VendorError: vendorError,
			RefundID: refundID, Attempts: attempts, Confirmed: confirmed, FinishedAt: fuzzTime(finished, off),
			WindowClosesAt: fuzzTime(closes, off), MaybeApplied: maybe, UnknownErrors: unknown, Retried: retried,
			NextAttemptAt: fuzzTime(next, -off)}
		got, gerr := tasks.EncodeResult(r)
		want, werr := json.Marshal(r)
		if (gerr != nil) != (werr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("EncodeResult:\n%s (%v)\njson.Marshal:\n%s (%v)", got, gerr, want, werr)
		}
	})
}

// TestEncodeResultCoversEveryField: EncodeResult names each field; a field
// added to Result must be added there too (FuzzEncodeResult then checks it).
func TestEncodeResultCoversEveryField(t *testing.T) {
	if b, err := tasks.EncodeResult(nil); string(b) != "null" || err != nil {
		t.Errorf("EncodeResult(nil) = %s, %v; json.Marshal writes null", b, err)
	}
	if n := reflect.TypeFor[tasks.Result]().NumField(); n != 14 {
		t.Fatalf("Result has %d fields; EncodeResult writes 14: add the new ones to it and to FuzzEncodeResult", n)
	}
}
