package rpcclient

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/refundd/refund-canceller/internal/clip"
)

// request is a JSON-RPC 2.0 request.
type request struct {
	JSONRPC string `json:"jsonrpc"`
	Method  string `json:"method"`
	Params  []any  `json:"params"`
	ID      int64  `json:"id"`
}

// encodeRequest answers the JSON-RPC request, with the session ID (unless
// empty) first among the params.
func encodeRequest(method string, id int64, session string, params []any) ([]byte, error) {
	all := make([]any, 0, len(params)+1)
	if session != "" {
		all = append(all, session)
	}
	return json.Marshal(request{JSONRPC: "2.0", Method: method, Params: append(all, params...), ID: id})
}

type response struct {
	ID       json.RawMessage `json:"id"`
	Result   json.RawMessage `json:"result"`
	Response json.RawMessage `json:"response"`
	Error    *struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data"`
	} `json:"error"`
}

// DecodeResponse reads one JSON-RPC answer to the request with the given id.
// It never panics: whatever the body, it answers nil (out filled), an
// *APIError from the server's error object, or an *APIError named
// NameHTTPStatus or NameMalformedResponse.
func DecodeResponse(method string, id int64, httpStatus int, retryAfter time.Duration, body []byte, out any) error {
	fail := func(name, msg string) error {
		return &APIError{Method: method, Name: name, Message: msg, HTTPStatus: httpStatus, RetryAfter: retryAfter}
	}
	var r response
	if err := json.Unmarshal(body, &r); err != nil {
		if httpStatus < 200 || httpStatus > 299 {
			return fail(NameHTTPStatus, http.StatusText(httpStatus))
		}
		return fail(NameMalformedResponse, "answer is not JSON-RPC: "+err.Error())
	}
	if r.Error != nil {
		e := &APIError{Method: method, Code: r.Error.Code, Message: clip.String(r.Error.Message, 500), HTTPStatus: httpStatus, RetryAfter: retryAfter}
		var data struct {
			ErrorCode string `json:"error_code"`
		}
		if json.Unmarshal(r.Error.Data, &data) == nil && data.ErrorCode != "" {
			e.Name = clip.String(data.ErrorCode, 100)
		} else {
			e.Name = nameOf(e.Code, e.Message)
		}
		return e
	}
	if httpStatus < 200 || httpStatus > 299 {
		return fail(NameHTTPStatus, http.StatusText(httpStatus))
	}
	if string(r.ID) != strconv.FormatInt(id, 10) {
		return fail(NameMalformedResponse, fmt.Sprintf("answer id %s does not match request id %d", clip.String(string(r.ID), 40), id))
	}
	result := r.Result
	if len(result) == 0 || string(result) == "null" {
		result = r.Response // one vendor page puts the payload under "response"
	}
	if len(result) == 0 {
		return fail(NameMalformedResponse, "answer has neither result nor error")
	}
	if raw, ok := out.(*json.RawMessage); ok && raw != nil {
		*raw = append((*raw)[:0], result...) // valid JSON: decoding the answer checked it
		return nil
	}
	if err := json.Unmarshal(result, out); err != nil {
		return fail(NameMalformedResponse, "unexpected result: "+err.Error())
	}
	return nil
}
