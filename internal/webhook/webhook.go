// Package webhook delivers completion notifications: when a cancellation
// reaches its final state, refundd POSTs its outcome record as JSON to the
// operator's NOTIFY_URL, signed with NOTIFY_SECRET.
//
// Delivery goes through asynq itself: each notification is a task of type
// TaskType on its own queue (DefaultQueue) with its own retries, so a crash
// loses none, a receiver that is down gets the notification when it is back
// (retried with backoff for up to MaxAge, default 24h), and an operator sees
// undelivered ones in the dashboard. It is at least once: a receiver should
// use the Refundd-Delivery header (the same on every retry) to drop repeats.
//
// The signature, in the header Refundd-Signature, is
//
//	t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>
//
// Verify checks it; receivers not written in Go do the same in a few lines
// (see the README).
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/refundd/refund-canceller/internal/loopback"
)

// Names of the notification task and its headers.
const (
	// TaskType is the asynq task type of a notification.
	TaskType = "refund:notify"
	// DefaultQueue is the queue notifications wait in when none is named;
	// refundd uses QueueFor(its refund queue).
	DefaultQueue = "notifications"
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>".
	SignatureHeader = "Refundd-Signature"
	// DeliveryHeader carries the notification's ID, the same on every retry.
	DeliveryHeader = "Refundd-Delivery"
	// DefaultTolerance is how old a signature Verify accepts by default.
	DefaultTolerance = 5 * time.Minute
)

// QueueFor answers the queue of the notifications of the cancellations in
// refundQueue: "<refundQueue>-notifications" (refunds-notifications by
// default), so two refundd fleets on one Redis never deliver each other's.
func QueueFor(refundQueue string) string { return refundQueue + "-notifications" }

// Sign answers the Refundd-Signature header for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify, matched with errors.Is.
var (
	ErrBadSignatureHeader = errors.New("webhook: malformed " + SignatureHeader + " header")
	ErrSignatureMismatch  = errors.New("webhook: signature does not match the body")
	ErrSignatureTooOld    = errors.New("webhook: signature timestamp outside the tolerance")
)

// Verify checks a Refundd-Signature header against body: the HMAC must
// match (any v1 entry, so a receiver can accept old and new secrets during a
// rotation by calling Verify with each) and its timestamp must lie within
// tolerance of now (0 means DefaultTolerance), which refuses replays of old
// deliveries.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrBadSignatureHeader
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil {
				return ErrBadSignatureHeader
			}
			sigs = append(sigs, b)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrBadSignatureHeader
	}
	if age := now.Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: signed %s ago", ErrSignatureTooOld, age.Round(time.Second))
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			return nil
		}
	}
	return ErrSignatureMismatch
}

// CheckURL answers nil if notifications may be sent to u: https, or plain
// http to a loopback host only (the rule refundd keeps for 2Checkout too).
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return errors.New("must be an absolute http(s) URL")
	}
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && loopback.Host(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return errors.New("must be https (plain http only to a loopback host)")
	}
	return fmt.Errorf("scheme %q: must be https", u.Scheme)
}
