// Package webhook delivers completion notifications: when a cancellation
// reaches its final state, refundd POSTs its outcome record as JSON to the
// operator's NOTIFY_URL, signed with NOTIFY_SECRET.
//
// Delivery goes through asynq itself: each notification is a task of type
// TaskType on its own queue (QueueFor: "<refund queue>-notifications")
// with its own retries, so a crash loses none, a receiver that is down
// gets the notification when it is back (retried with backoff for up to
// MaxAge, default 24h), and an operator sees
// undelivered ones in the dashboard. It is at least once: a receiver should
// use the Refundd-Delivery header (the same on every retry) to drop repeats.
//
// The signature, in the header Refundd-Signature, is
//
//	t=<unix seconds>,v2=<hex HMAC-SHA256 of "<t>.<delivery ID>.<body>" keyed with the secret>
//
// It covers the delivery ID (the Refundd-Delivery header, "<task ID>#<run>"),
// so a captured delivery replayed under another ID fails the check, and the
// ID a receiver dedupes on is one refundd signed. The string splits one way
// only: t is digits, a delivery ID never holds '{' (DeliveryIDPattern) and
// the body is a JSON object. Verify checks it; receivers not written in Go
// do the same in a few lines (docs/operating.md, "Completion webhooks").
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
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
	// SignatureHeader carries "t=<unix seconds>,v2=<hex HMAC-SHA256>".
	SignatureHeader = "Refundd-Signature"
	// DeliveryHeader carries the notification's ID, the same on every retry;
	// the signature covers it.
	DeliveryHeader = "Refundd-Delivery"
	// DefaultTolerance is how old a signature Verify accepts by default.
	DefaultTolerance = 5 * time.Minute
)

// QueueFor answers the queue of the notifications of the cancellations in
// refundQueue: "<refundQueue>-notifications" (refunds-notifications by
// default), so two refundd fleets on one Redis never deliver each other's.
func QueueFor(refundQueue string) string { return refundQueue + "-notifications" }

// DeliveryIDPattern is what a delivery ID may hold: a task ID and its run
// ("refund:cancel:73152889:20261129T100000Z#1"), never '{', so the signed
// string "<t>.<id>.<body>" splits one way only. Notify refuses others.
var DeliveryIDPattern = regexp.MustCompile(`^[A-Za-z0-9_.:#-]{1,256}$`)

// Sign answers the Refundd-Signature header for body sent at t as the
// delivery deliveryID.
func Sign(secret []byte, t time.Time, deliveryID string, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v2=" + hex.EncodeToString(mac(secret, ts, deliveryID, body))
}

// mac is the HMAC-SHA256 of "<ts>.<deliveryID>.<body>".
func mac(secret []byte, ts, deliveryID string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write([]byte(deliveryID))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// Errors of Verify, matched with errors.Is.
var (
	ErrBadSignatureHeader = errors.New("webhook: malformed " + SignatureHeader + " header")
	ErrSignatureMismatch  = errors.New("webhook: signature does not match the delivery ID and body")
	ErrSignatureTooOld    = errors.New("webhook: signature timestamp outside the tolerance")
)

// Verify checks a Refundd-Signature header against the delivery ID (the
// Refundd-Delivery header) and body: the HMAC must match (any v2 entry; a
// receiver accepts old and new secrets during a rotation by calling Verify
// with each) and its timestamp must lie within tolerance of now (0 means
// DefaultTolerance). A replay is then refused twice over: after the
// tolerance by its age, within it by its delivery ID — signed, so it cannot
// be changed — which the receiver has seen (keep seen IDs at least as long
// as the tolerance).
func Verify(secret []byte, header, deliveryID string, body []byte, now time.Time, tolerance time.Duration) error {
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
		case "v2":
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
	want := mac(secret, ts, deliveryID, body)
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
