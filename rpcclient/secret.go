package rpcclient

// Secret holds a secret value. It prints, marshals and logs as "[REDACTED]";
// only Reveal gives the value.
type Secret string

const redacted = "[REDACTED]"

// String answers "[REDACTED]".
func (Secret) String() string { return redacted }

// GoString answers "[REDACTED]", so %#v hides it too.
func (Secret) GoString() string { return redacted }

// MarshalText answers "[REDACTED]", so JSON and zap's reflection hide it.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Reveal answers the secret value. Call it only where the value is used.
func (s Secret) Reveal() string { return string(s) }
