package rpcclient

import (
	"encoding/json"
	"time"
)

// DecodeResponseSlow is DecodeResponse without its fast path, for the
// differential fuzz test.
func DecodeResponseSlow(method string, id int64, httpStatus int, retryAfter time.Duration, body []byte, out *json.RawMessage) error {
	return decodeResponse(method, id, httpStatus, retryAfter, body, out, false)
}

// EncodeRequest is encodeRequest, for the differential fuzz test.
var EncodeRequest = encodeRequest
