package rpcclient

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"time"
)

// DefaultURL is 2Checkout's JSON-RPC 6.0 endpoint.
const DefaultURL = "https://api.2checkout.com/rpc/6.0/"

// DateLayout is the layout of the UTC date signed at login ("2010-05-13 12:12:12").
const DateLayout = "2006-01-02 15:04:05"

// Hash algorithms accepted by login.
const (
	HashMD5    = "md5"    // HMAC-MD5, three login params (the vendor's PHP sample)
	HashSHA256 = "sha256" // HMAC-SHA256, "sha256" passed as a fourth login param
)

// JSON-RPC method names.
const (
	MethodLogin        = "login"
	MethodCancelRefund = "cancelRefund"
	MethodGetOrder     = "getOrder"
	MethodIssueRefund  = "issueRefund"
)

// Error names, as carried in an error object's data.error_code.
//
// 2Checkout documents AUTHENTICATION_FAILED and FORBIDDEN; public clients show
// the numeric codes 10000 (FORBIDDEN), 10001 (INVALID_SESSION), 10002
// (SESSION_EXPIRED) and 10004 (NOT_ALLOWED). The vendor documents no error
// codes for cancelRefund, getOrder or issueRefund: the names and codes below
// 20000 and up are this project's choice, spoken by the sandbox server
// (package rpctest) and relied on by Classify. Classify also accepts the
// numeric code alone when a server sends no name.
const (
	// Login and session.
	NameAuthenticationFailed = "AUTHENTICATION_FAILED" // bad merchant code, hash, or date
	NameForbidden            = "FORBIDDEN"             // no usable session (or a bad hash)
	NameInvalidSession       = "INVALID_SESSION"       // unknown session ID
	NameSessionExpired       = "SESSION_EXPIRED"       // session past its lifetime
	NameNotAllowed           = "NOT_ALLOWED"           // account not allowed to call the method

	// cancelRefund, getOrder, issueRefund (this project's names).
	NameInvalidOrderReference = "INVALID_ORDER_REFERENCE" // malformed order reference
	NameOrderNotFound         = "ORDER_NOT_FOUND"         // no such order
	NameNoRefund              = "NO_REFUND"               // the order has no refund to cancel
	NameRefundNotCancellable  = "REFUND_NOT_CANCELLABLE"  // refund not PENDING or APPROVED (e.g. already cancelled)
	NameRefundWindowExpired   = "REFUND_WINDOW_EXPIRED"   // more than 2 hours since the refund's initiation
	NamePendingRefundExists   = "PENDING_REFUND_EXISTS"   // issueRefund: "You already have a pending refund request."
	NameOrderCanceled         = "ORDER_CANCELED"          // issueRefund: "Order already canceled"
	NameOrderNotRefundable    = "ORDER_NOT_REFUNDABLE"    // issueRefund: order not COMPLETE
	NameTotalRefundExists     = "TOTAL_REFUND_EXISTS"     // issueRefund: "You have already placed a Total refund for this order."
	NameAmountExceeded        = "AMOUNT_EXCEEDED"         // issueRefund: "The maximum refundable amount for this order has been exceeded."
	NameRefundPeriodExpired   = "REFUND_PERIOD_EXPIRED"   // issueRefund: "The allowed period to request a new refund for this order has expired"

	// JSON-RPC 2.0 standard errors.
	NameParseError     = "PARSE_ERROR"
	NameInvalidRequest = "INVALID_REQUEST"
	NameMethodNotFound = "METHOD_NOT_FOUND"
	NameInvalidParams  = "INVALID_PARAMS"
	NameInternalError  = "INTERNAL_ERROR"

	// Names this client gives to answers that carry no JSON-RPC error object.
	NameHTTPStatus        = "HTTP_STATUS"        // a non-2xx answer without a JSON-RPC error
	NameMalformedResponse = "MALFORMED_RESPONSE" // a body that is not a valid JSON-RPC answer
)

// Codes maps each error name to its numeric code.
var codes = map[string]int{
	NameForbidden:             10000,
	NameInvalidSession:        10001,
	NameSessionExpired:        10002,
	NameAuthenticationFailed:  10003,
	NameNotAllowed:            10004,
	NameInvalidOrderReference: 20001,
	NameOrderNotFound:         20002,
	NameNoRefund:              20003,
	NameRefundNotCancellable:  20004,
	NameRefundWindowExpired:   20005,
	NamePendingRefundExists:   20006,
	NameOrderCanceled:         20007,
	NameOrderNotRefundable:    20008,
	NameTotalRefundExists:     20009,
	NameAmountExceeded:        20010,
	NameRefundPeriodExpired:   20011,
	NameParseError:            -32700,
	NameInvalidRequest:        -32600,
	NameMethodNotFound:        -32601,
	NameInvalidParams:         -32602,
	NameInternalError:         -32603,
}

// names maps the codes someone other than this project documented (the
// public client's 10000–10004 but 10003, and JSON-RPC 2.0's) to their names.
// The 2xxxx codes and 10003 are the sandbox's invention: a bare code 20004
// from the real API may mean anything, so those are named only when the
// answer carries data.error_code.
var names = func() map[int]string {
	m := make(map[int]string, len(codes))
	for n, c := range codes {
		if (c >= 10000 && c <= 10004 && c != 10003) || c < 0 {
			m[c] = n
		}
	}
	return m
}()

// documentedMessages are the error messages 2Checkout documents (the
// login pages, a public client, and the issueRefund error page), lower
// case, without a trailing period, with the name this package gives them.
// An answer without data.error_code whose message is one of these (or one
// of these followed by ": detail") is named by it.
var documentedMessages = map[string]string{
	"authentication failed":                                                 NameAuthenticationFailed,
	"forbidden area":                                                        NameForbidden,
	"invalid hash provided or session expired":                              NameForbidden,
	"order_ref missing or format incorrect":                                 NameInvalidOrderReference,
	"invalid order_ref":                                                     NameInvalidOrderReference,
	"order already canceled":                                                NameOrderCanceled,
	"you have already placed a total refund for this order":                 NameTotalRefundExists,
	"you already have a pending refund request":                             NamePendingRefundExists,
	"the maximum refundable amount for this order has been exceeded":        NameAmountExceeded,
	"you cannot place a refund request due to the order's current status":   NameOrderNotRefundable,
	"you cannot place a refund request due to the order's payment details":  NameOrderNotRefundable,
	"the allowed period to request a new refund for this order has expired": NameRefundPeriodExpired,
}

// nameOf names an error object that carried no data.error_code: by a
// documented code, else by a documented message, else "ERROR_<code>".
func nameOf(code int, message string) string {
	if n := NameOf(code); n != "" {
		return n
	}
	m := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(message)), ".")
	if n, ok := documentedMessages[m]; ok {
		return n
	}
	if head, _, ok := strings.Cut(m, ":"); ok {
		if n, ok := documentedMessages[strings.TrimSuffix(head, ".")]; ok {
			return n
		}
	}
	return "ERROR_" + strconv.Itoa(code)
}

// CodeOf answers the numeric code of an error name, and false for a name this
// package does not know.
func CodeOf(name string) (int, bool) {
	c, ok := codes[name]
	return c, ok
}

// NameOf answers the error name of a numeric code that 2Checkout (or a
// public client of it) or JSON-RPC 2.0 documents, or "" for any other code.
func NameOf(code int) string { return names[code] }

// LoginHash computes the login hash 2Checkout expects: the hex HMAC, keyed
// with the secret key, of len(merchantCode)+merchantCode+len(date)+date, where
// lengths are byte lengths in decimal and date is formatted with DateLayout in
// UTC. algo is HashMD5 or HashSHA256.
func LoginHash(algo, merchantCode, date string, secretKey []byte) (string, error) {
	var h func() hash.Hash
	switch algo {
	case HashMD5:
		h = md5.New
	case HashSHA256:
		h = sha256.New
	default:
		return "", fmt.Errorf("unknown hash algorithm %q (want %q or %q)", algo, HashMD5, HashSHA256)
	}
	mac := hmac.New(h, secretKey)
	mac.Write([]byte(strconv.Itoa(len(merchantCode)) + merchantCode + strconv.Itoa(len(date)) + date))
	return hex.EncodeToString(mac.Sum(nil)), nil
}

// FormatDate formats t as the login date: UTC, DateLayout.
func FormatDate(t time.Time) string { return t.UTC().Format(DateLayout) }
