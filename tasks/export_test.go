package tasks

// DecodeTokens is decode without its fast path (decodePlain), for the
// differential fuzz test.
func DecodeTokens(b []byte, strict bool) (CancelRefund, error) {
	if err := checkBytes(b); err != nil {
		return CancelRefund{}, err
	}
	return decodeTokens(b, strict)
}
