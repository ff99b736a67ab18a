package webhook

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignVerify(t *testing.T) {
	secret := []byte("whsec-test")
	body := []byte(`{"outcome":"cancelled","order_ref":"A1"}`)
	const id = "refund:cancel:A1:20261129T000000Z#1"
	at := time.Unix(1_800_000_000, 0)
	sig := Sign(secret, at, id, body)
	// Computed apart: printf '%s' '1800000000.<id>.<body>' | openssl dgst -sha256 -hmac whsec-test
	if want := "t=1800000000,v2=74bd030fe8ae821c8020d2da0bf40e860e60572c31b8879833c663fc119cb8c6"; sig != want {
		t.Fatalf("Sign = %s, want %s", sig, want)
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		header string
		id     string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", secret, sig, id, body, at, nil},
		{"valid at the tolerance's edge", secret, sig, id, body, at.Add(DefaultTolerance), nil},
		{"too old", secret, sig, id, body, at.Add(DefaultTolerance + time.Second), ErrSignatureTooOld},
		{"from the future", secret, sig, id, body, at.Add(-DefaultTolerance - time.Second), ErrSignatureTooOld},
		{"body changed", secret, sig, id, []byte(`{"outcome":"refused","order_ref":"A1"}`), at, ErrSignatureMismatch},
		{"other secret", []byte("other"), sig, id, body, at, ErrSignatureMismatch},
		{"timestamp changed", secret, strings.Replace(sig, "t=1800000000", "t=1800000001", 1), id, body, at, ErrSignatureMismatch},
		{"rotation: one of two v2 matches", secret, "t=1800000000,v2=00ff," + strings.Split(sig, ",")[1], id, body, at, nil},
		{"replayed under another delivery ID", secret, sig, "refund:cancel:A1:20261129T000000Z#2", body, at, ErrSignatureMismatch},
		{"no v2", secret, "t=1800000000", id, body, at, ErrBadSignatureHeader},
		{"only the old v1 scheme", secret, strings.Replace(sig, "v2=", "v1=", 1), id, body, at, ErrBadSignatureHeader},
		{"no t", secret, strings.Split(sig, ",")[1], id, body, at, ErrBadSignatureHeader},
		{"not hex", secret, "t=1800000000,v2=zz", id, body, at, ErrBadSignatureHeader},
		{"garbage", secret, "garbage", id, body, at, ErrBadSignatureHeader},
		{"empty", secret, "", id, body, at, ErrBadSignatureHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.header, tc.id, tc.body, tc.now, 0)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://hooks.example.com/refunds": true,
		"http://127.0.0.1:9000/hook":        true,
		"http://localhost/hook":             true,
		"http://[::1]:9000/hook":            true,
		"http://hooks.example.com/refunds":  false,
		"http://10.0.0.1/hook":              false,
		"ftp://hooks.example.com/":          false,
		"/relative":                         false,
		"":                                  false,
		"https://":                          false,
	} {
		if err := CheckURL(raw); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v, want ok=%v", raw, err, ok)
		}
	}
}

func FuzzVerify(f *testing.F) {
	secret := []byte("s")
	body := []byte(`{}`)
	at := time.Unix(1_800_000_000, 0)
	f.Add(Sign(secret, at, "d#1", body), "d#1", body)
	f.Add("t=1,v2=", "d#1", body)
	f.Add("t=,v2=00,v2=zz,,=", "", []byte(nil))
	f.Add("t=99999999999999999999,v2=00", "d#1", body)
	f.Fuzz(func(t *testing.T, header, id string, b []byte) {
		if Verify(secret, header, id, b, at, 0) != nil {
			return
		}
		// Accepted: the header must carry the true HMAC of id and b for
		// some timestamp within the tolerance.
		for d := -DefaultTolerance; d <= DefaultTolerance; d += time.Second {
			if strings.Contains(header, strings.Split(Sign(secret, at.Add(d), id, b), ",")[1]) {
				return
			}
		}
		t.Fatalf("accepted %q for delivery %q, body %q without their HMAC", header, id, b)
	})
}
