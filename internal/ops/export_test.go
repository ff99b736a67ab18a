package ops

// The formatters with an injected clock, for tests.
var (
	FormatPayloadAt = formatPayload
	FormatResultAt  = formatResult
)
