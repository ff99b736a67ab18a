package plainjson_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/refundd/refund-canceller/internal/plainjson"
)

var keys = []string{"a", "b", "c"}

func TestObject(t *testing.T) {
	for _, tc := range []struct {
		in   string
		ok   bool
		want [3]string // raw values, "" for absent
	}{
		{`{}`, true, [3]string{}},
		{` { "a" : "x" , "c":null }  `, true, [3]string{`"x"`, "", "null"}},
		{`{"b":-12,"a":true,"c":false}`, true, [3]string{"true", "-12", "false"}},
		{`{"a":0}`, true, [3]string{"0"}},
		{`{"a":"é ✓"}`, true, [3]string{`"é ✓"`}},
		{`{"a":"x\"y"}`, false, [3]string{}},        // an escape
		{"{\"a\":\"x\ty\"}", false, [3]string{}},    // a control character
		{`{"a":"x","a":"y"}`, false, [3]string{}},   // twice
		{`{"A":"x"}`, false, [3]string{}},           // another key
		{`{"d":1}`, false, [3]string{}},             // unknown key
		{`{"a":01}`, false, [3]string{}},            // leading zero
		{`{"a":1.5}`, false, [3]string{}},           // a fraction
		{`{"a":1e3}`, false, [3]string{}},           // an exponent
		{`{"a":-}`, false, [3]string{}},             // no digits
		{`{"a":nul}`, false, [3]string{}},           // cut short
		{`{"a":{}}`, false, [3]string{}},            // not a scalar
		{`{"a":[1]}`, false, [3]string{}},           // not a scalar
		{`{"a":"x",}`, false, [3]string{}},          // trailing comma
		{`{"a":"x"} {}`, false, [3]string{}},        // data after
		{`{"a":"x"`, false, [3]string{}},            // unclosed
		{`{"a" "x"}`, false, [3]string{}},           // no colon
		{`["a"]`, false, [3]string{}},               // not an object
		{``, false, [3]string{}},                    // nothing
		{`{"a":"x"` + "\x00}", false, [3]string{}},  // junk
		{`{"a":trUe}`, false, [3]string{}},          // not a literal
		{`{"a":"unterminated}`, false, [3]string{}}, // unterminated string
	} {
		vals := make([][]byte, len(keys))
		ok := plainjson.Object([]byte(tc.in), keys, vals)
		if ok != tc.ok {
			t.Errorf("%s: ok %v, want %v", tc.in, ok, tc.ok)
			continue
		}
		if !ok {
			continue
		}
		for i, v := range vals {
			if string(v) != tc.want[i] || (v == nil) != (tc.want[i] == "") {
				t.Errorf("%s: %s = %q, want %q", tc.in, keys[i], v, tc.want[i])
			}
		}
	}
}

func TestString(t *testing.T) {
	for in, want := range map[string]string{`"abc"`: "abc", `""`: "", `"é"`: "é"} {
		if got, ok := plainjson.String([]byte(in)); !ok || got != want {
			t.Errorf("String(%s) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{`"a\"b"`, `"a`, `1`, `null`, `"a" `, ``, "\"a\nb\"", "\"\xff\""} {
		if _, ok := plainjson.String([]byte(in)); ok {
			t.Errorf("String(%q) accepted", in)
		}
	}
}

// FuzzObject: whatever Object accepts, encoding/json reads as the same
// object (a valid JSON object, the same values for the same keys).
func FuzzObject(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":"x","b":-1,"c":null}`, `{"a":true}`, ` {"b" : 0 } `, `{"a":"\u00e9"}`, `{"a":1.5}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		vals := make([][]byte, len(keys))
		if !plainjson.Object(b, keys, vals) {
			return
		}
		var m map[string]json.RawMessage
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&m); err != nil || dec.More() {
			t.Fatalf("Object accepted %q, which encoding/json reads as %v", b, err)
		}
		if len(m) > len(keys) {
			t.Fatalf("%q: keys %v", b, m)
		}
		for i, k := range keys {
			if got, want := vals[i], m[k]; !bytes.Equal(got, want) {
				t.Fatalf("%q: %s = %s, encoding/json reads %s", b, k, got, want)
			}
			if vals[i] == nil {
				continue
			}
			var v any
			if err := json.Unmarshal(vals[i], &v); err != nil {
				t.Fatalf("%q: %s's value %s: %v", b, k, vals[i], err)
			}
			if s, ok := plainjson.String(vals[i]); ok && fmt.Sprint(v) != s {
				t.Fatalf("%q: String = %q, encoding/json reads %q", b, s, v)
			}
		}
	})
}

func ExampleObject() {
	keys := []string{"order_ref", "refund_initiated_at"}
	vals := make([][]byte, len(keys))
	ok := plainjson.Object([]byte(`{"order_ref":"73152889","refund_initiated_at":"2026-11-25T10:00:00Z"}`), keys, vals)
	ref, _ := plainjson.String(vals[0])
	fmt.Println(ok, ref, string(vals[1]))
	// Output: true 73152889 "2026-11-25T10:00:00Z"
}

// FuzzAppendString holds AppendString to json.Marshal, byte for byte.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "73152889", `a"b\c`, "<&>", "\x00\x1f\x7f", "é\u2028\u2029", "\xff\xfe", "\U0001F600"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := plainjson.AppendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("AppendString(%q) = %s, json.Marshal %s", s, got[1:], want)
		}
	})
}
