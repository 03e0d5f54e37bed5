package retryhttp

import (
	"fmt"
	"math"
	"sync/atomic"
)

// Budget is a token bucket that bounds the retries of every request that
// shares it, so that many clients retrying against a failing server cannot
// multiply its load.
//
// A Budget starts with burst tokens and never holds more. The first attempt
// of every request adds ratio tokens; every retry takes one token, and a
// retry that finds less than one token is not made. Retries therefore never
// exceed burst + ratio × requests, and a server that fails every request
// sees at most about 1 + ratio times the traffic it would see without
// retries. The approach follows gRPC's retry throttling and Finagle's
// RetryBudget.
//
// A Budget is safe for concurrent use. Share one between Transports by
// setting the same *Budget in their Policies. The zero Budget holds no
// tokens and gains none, so it refuses every retry; use NewBudget.
type Budget struct {
	// Tokens are counted in millionths so that repeated fractional deposits
	// add up exactly: ten deposits of 0.1 make one whole token.
	micro     atomic.Int64
	ratio     int64 // millionths of a token per request
	burst     int64 // millionths of a token
	unlimited bool
	err       error // set by NewBudget for invalid arguments; see Policy.Validate
}

const microPerToken = 1_000_000

// NewBudget returns a Budget that starts full with burst tokens and gains
// ratio tokens for every request sent through a Transport that uses it.
// NewBudget(0.1, 10), the default, allows a retry for every ten requests,
// and ten at once after a quiet period. The ratio is kept to six decimal
// places.
//
// A ratio that is negative, infinite or NaN, or a negative burst, makes an
// invalid Budget: a Transport using it returns an error naming the problem
// instead of sending anything (see Policy.Validate).
func NewBudget(ratio float64, burst int) *Budget {
	b := &Budget{}
	switch {
	case math.IsNaN(ratio) || math.IsInf(ratio, 0) || ratio < 0:
		b.err = fmt.Errorf("ratio %v must be a finite number of at least 0", ratio)
		return b
	case burst < 0:
		b.err = fmt.Errorf("burst %d must not be negative", burst)
		return b
	}
	// Half the range keeps tokens + ratio from overflowing.
	const maxTokens = math.MaxInt64 / microPerToken / 2
	b.burst = int64(min(burst, maxTokens)) * microPerToken
	b.ratio = int64(math.Round(math.Min(ratio, maxTokens) * microPerToken))
	b.micro.Store(b.burst)
	return b
}

// UnlimitedBudget returns a Budget that never refuses a retry, for a
// Transport whose retries are bounded by its Policy alone. Use it with care:
// without a budget, every client multiplies a failing server's load by up to
// Policy.MaxAttempts.
func UnlimitedBudget() *Budget {
	return &Budget{unlimited: true}
}

// Tokens reports the number of tokens the Budget holds now: how many
// retries it would allow before it gains more. It is +Inf for an
// UnlimitedBudget.
func (b *Budget) Tokens() float64 {
	if b.unlimited {
		return math.Inf(1)
	}
	return float64(b.micro.Load()) / microPerToken
}

// deposit credits the Budget for one request.
func (b *Budget) deposit() {
	if b.ratio == 0 {
		return
	}
	for {
		old := b.micro.Load()
		if old >= b.burst {
			return
		}
		if b.micro.CompareAndSwap(old, min(old+b.ratio, b.burst)) {
			return
		}
	}
}

// withdraw takes a token for one retry and reports whether there was one.
func (b *Budget) withdraw() bool {
	if b.unlimited {
		return true
	}
	for {
		old := b.micro.Load()
		if old < microPerToken {
			return false
		}
		if b.micro.CompareAndSwap(old, old-microPerToken) {
			return true
		}
	}
}

// NewHostBudget returns a Budget that keeps a separate bucket for every
// destination (a request URL's scheme, host and port), each behaving as
// NewBudget(ratio, burst) would. Several Transports may share it.
func NewHostBudget(ratio float64, burst int) *Budget {
	return NewBudget(ratio, burst) // TODO(per-host): one bucket per destination
}

// TokensFor reports the tokens that requests to the destination host (a
// URL's scheme and host, such as "https://api.example.com", with or without
// a port) may spend.
func (b *Budget) TokensFor(host string) float64 {
	return b.Tokens()
}
