package retryhttp

import (
	"context"
	"fmt"
)

// Per-request control: a caller changes how one request is retried through
// its context, the way it passes a deadline, rather than with a Transport
// of its own:
//
//	req, err := http.NewRequest(http.MethodGet, "https://api.example.com/healthz", nil)
//	req = req.WithContext(retryhttp.NoRetry(req.Context())) // one attempt
//
// Each helper adds to the overrides already in the context, so they
// combine. NoRetry wins: under it a request gets one attempt whatever
// MaxAttempts says, before or after it. Of two MaxAttempts, the later one
// counts. Idempotent combines with either. An override changes only what it
// names: MaxElapsed, the context's deadline, the Budget, quota holds, the
// Throttle and the hooks apply to the request as to any other. A request
// without an override pays for none: one Context.Value lookup, no
// allocation, no lock.

// requestPolicy is what the overrides in a request's context say.
type requestPolicy struct {
	noRetry     bool
	idempotent  bool
	maxAttempts int // 0: the Policy's
}

// requestPolicyKey is the context key of a requestPolicy.
type requestPolicyKey struct{}

// NoRetry returns a copy of ctx under which a request gets exactly one
// attempt, whatever the Policy or a MaxAttempts override says: for a health
// check, or any request whose caller would rather know at once. A retryable
// outcome is returned as it came, as under Policy.MaxAttempts 1, and
// OnGiveUp reports it with ErrAttemptsUsedUp (or, for a request that may not
// be resent, ErrNotIdempotent or ErrBodyNotReplayable). A quota hold still
// keeps the request back while the server's quota is spent, unless the wait
// would not fit the context's deadline; give a health check a short one.
func NoRetry(ctx context.Context) context.Context {
	o := requestPolicyOf(ctx)
	o.noRetry = true
	return context.WithValue(ctx, requestPolicyKey{}, o)
}

// Idempotent returns a copy of ctx under which a request is treated as
// idempotent whatever its method and Policy.Idempotent say: for a POST or a
// PATCH the caller knows is safe to send twice. It is then retried, and
// hedged under Policy.Hedge, like a GET. Its body must still be replayable
// (no body, http.NoBody, or GetBody set): a request whose body cannot be
// sent again gets one attempt, and gives up with ErrBodyNotReplayable.
func Idempotent(ctx context.Context) context.Context {
	o := requestPolicyOf(ctx)
	o.idempotent = true
	return context.WithValue(ctx, requestPolicyKey{}, o)
}

// MaxAttempts returns a copy of ctx under which a request gets at most n
// attempts, the first included, in place of Policy.MaxAttempts: fewer or
// more (MaxElapsed, the deadline and the Budget still bound the retries).
// n = 0 means the Policy's value; a negative n, which Validate would reject
// in a Policy, makes the request fail before anything is sent, with an
// error that names the override. Of two MaxAttempts in one context, the
// later counts; NoRetry, before or after it, wins.
func MaxAttempts(ctx context.Context, n int) context.Context {
	o := requestPolicyOf(ctx)
	o.maxAttempts = n
	return context.WithValue(ctx, requestPolicyKey{}, o)
}

// requestPolicyOf returns the overrides in ctx, or none.
func requestPolicyOf(ctx context.Context) requestPolicy {
	o, _ := ctx.Value(requestPolicyKey{}).(requestPolicy)
	return o
}

// validate reports an override that Policy.Validate would reject, in an
// error that names it.
func (o requestPolicy) validate() error {
	if o.maxAttempts < 0 {
		return fmt.Errorf("retryhttp: invalid MaxAttempts(ctx, %d) override: must not be negative", o.maxAttempts)
	}
	return nil
}

// attempts returns the number of attempts a request under o may make.
func (o requestPolicy) attempts(p *Policy) int {
	switch {
	case o.noRetry:
		return 1
	case o.maxAttempts > 0:
		return o.maxAttempts
	}
	return p.maxAttempts()
}
