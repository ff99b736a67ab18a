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
	at := time.Unix(1_800_000_000, 0)
	sig := Sign(secret, at, body)
	// Computed apart: printf '%s' '1800000000.<body>' | openssl dgst -sha256 -hmac whsec-test
	if want := "t=1800000000,v1=b0701554814ae4f811a4ea874d5a40c78c498be0b11d6fc292bc9fd7c8b34ec9"; sig != want {
		t.Fatalf("Sign = %s, want %s", sig, want)
	}
	for _, tc := range []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"valid", secret, sig, body, at, nil},
		{"valid at the tolerance's edge", secret, sig, body, at.Add(DefaultTolerance), nil},
		{"too old", secret, sig, body, at.Add(DefaultTolerance + time.Second), ErrSignatureTooOld},
		{"from the future", secret, sig, body, at.Add(-DefaultTolerance - time.Second), ErrSignatureTooOld},
		{"body changed", secret, sig, []byte(`{"outcome":"refused","order_ref":"A1"}`), at, ErrSignatureMismatch},
		{"other secret", []byte("other"), sig, body, at, ErrSignatureMismatch},
		{"timestamp changed", secret, strings.Replace(sig, "t=1800000000", "t=1800000001", 1), body, at, ErrSignatureMismatch},
		{"rotation: one of two v1 matches", secret, "t=1800000000,v1=00ff," + strings.Split(sig, ",")[1], body, at, nil},
		{"no v1", secret, "t=1800000000", body, at, ErrBadSignatureHeader},
		{"no t", secret, strings.Split(sig, ",")[1], body, at, ErrBadSignatureHeader},
		{"not hex", secret, "t=1800000000,v1=zz", body, at, ErrBadSignatureHeader},
		{"garbage", secret, "garbage", body, at, ErrBadSignatureHeader},
		{"empty", secret, "", body, at, ErrBadSignatureHeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.header, tc.body, tc.now, 0)
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
	f.Add(Sign(secret, at, body), body)
	f.Add("t=1,v1=", body)
	f.Add("t=,v1=00,v1=zz,,=", []byte(nil))
	f.Add("t=99999999999999999999,v1=00", body)
	f.Fuzz(func(t *testing.T, header string, b []byte) {
		if Verify(secret, header, b, at, 0) != nil {
			return
		}
		// Accepted: the header must carry the true HMAC of b for some
		// timestamp within the tolerance.
		for d := -DefaultTolerance; d <= DefaultTolerance; d += time.Second {
			if strings.Contains(header, strings.Split(Sign(secret, at.Add(d), b), ",")[1]) {
				return
			}
		}
		t.Fatalf("accepted %q for body %q without its HMAC", header, b)
	})
}
