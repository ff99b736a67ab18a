package ops

import "net/http"

// The formatters with an injected clock, for tests.
var (
	FormatPayloadAt = formatPayload
	FormatResultAt  = formatResult
)

// Asynqmon answers the dashboard's Asynqmon handler without the checks in
// front of it, to measure what they save.
func (d *Dashboard) Asynqmon() http.Handler { return d.h }
