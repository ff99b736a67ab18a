package rpctest

// FaultMix answers the "20% fault mix" of issue 23 on cancelRefund: 503
// with Retry-After 2 on 6% of calls, 429 with Retry-After 3 on 3.5%, the
// rest drops, hangs, malformed answers, lost answers of applied cancels
// (apply_then_drop) and expired sessions. Rules are tried in order and the
// first answer wins, so each probability is of the calls the rules before
// it left: together 1−Π(1−p) ≈ 18.6% ("20%" in the issue). The fault benchmarks of
// internal/vendorbudget and the soak (internal/soak) both use it, so the
// mix is written once.
func FaultMix() []FaultRule {
	p := func(v float64) *float64 { return &v }
	return []FaultRule{
		{Method: "cancelRefund", Kind: FaultStatus, Status: 503, RetryAfter: 2, Probability: p(0.06)},
		{Method: "cancelRefund", Kind: FaultStatus, Status: 429, RetryAfter: 3, Probability: p(0.037)},
		{Method: "cancelRefund", Kind: FaultDrop, Probability: p(0.03)},
		{Method: "cancelRefund", Kind: FaultHang, Probability: p(0.01)},
		{Method: "cancelRefund", Kind: FaultMalformed, Probability: p(0.02)},
		{Method: "cancelRefund", Kind: FaultApplyThenDrop, Probability: p(0.02)},
		{Method: "cancelRefund", Kind: FaultExpireSession, Probability: p(0.025)},
	}
}
