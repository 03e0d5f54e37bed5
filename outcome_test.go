package retryhttp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// recorder records every event a Policy hook receives, for hooks called
// from many goroutines.
type recorder[T any] struct {
	mu     sync.Mutex
	events []T
}

func (r *recorder[T]) record(ev T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
}

func (r *recorder[T]) all() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]T(nil), r.events...)
}

// giveUps records every GiveUpEvent.
type giveUps = recorder[retryhttp.GiveUpEvent]

// refusedURL returns the URL of a loopback port that nothing listens on.
func refusedURL(t *testing.T) string {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	return url
}

func TestEveryGiveUpOnAResponseSaysWhy(t *testing.T) {
	stop := func() backoff.BackOff { return &backoff.StopBackOff{} }
	tests := []struct {
		name         string
		policy       retryhttp.Policy
		method       string
		answer       retrytest.Answer
		ctxTimeout   time.Duration
		wantReason   error
		wantAttempts int
		wantServer   time.Duration // the wait the last response named, if any
	}{
		{"attempts used up", retryhttp.Policy{MaxAttempts: 3}, "GET", retrytest.Unavailable(2 * time.Second), 0, retryhttp.ErrAttemptsUsedUp, 3, 2 * time.Second},
		{"MaxAttempts 1", retryhttp.Policy{MaxAttempts: 1}, "GET", retrytest.Unavailable(0), 0, retryhttp.ErrAttemptsUsedUp, 1, 0},
		{"Retry-After over the cap", retryhttp.Policy{MaxRetryAfter: time.Minute}, "GET", retrytest.Unavailable(time.Hour), 0, retryhttp.ErrRetryAfterTooLong, 1, time.Hour},
		{"budget empty", retryhttp.Policy{Budget: retryhttp.NewBudget(0, 0)}, "GET", retrytest.Unavailable(0), 0, retryhttp.ErrBudgetEmpty, 1, 0},
		{"POST", retryhttp.Policy{}, "POST", retrytest.Unavailable(time.Second), 0, retryhttp.ErrNotIdempotent, 1, time.Second},
		{"MaxElapsed", retryhttp.Policy{MaxElapsed: 10 * time.Second}, "GET", retrytest.Unavailable(20 * time.Second), 0, retryhttp.ErrMaxElapsed, 1, 20 * time.Second},
		{"deadline", retryhttp.Policy{}, "GET", retrytest.Unavailable(5 * time.Second), time.Second, retryhttp.ErrDeadline, 1, 5 * time.Second},
		{"backoff stop", retryhttp.Policy{Backoff: stop}, "GET", retrytest.Unavailable(0), 0, retryhttp.ErrBackoffStop, 1, 0},
		// MaxElapsed ends at 10 s, the deadline at 2 s: the deadline ends first.
		{"deadline before MaxElapsed", retryhttp.Policy{MaxElapsed: 10 * time.Second}, "GET", retrytest.Unavailable(20 * time.Second), 2 * time.Second, retryhttp.ErrDeadline, 1, 20 * time.Second},
		// MaxElapsed ends at 1 s, the deadline at 5 s: MaxElapsed ends first.
		{"MaxElapsed before deadline", retryhttp.Policy{MaxElapsed: time.Second}, "GET", retrytest.Unavailable(20 * time.Second), 5 * time.Second, retryhttp.ErrMaxElapsed, 1, 20 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t).Otherwise(tt.answer.WithHeader("X-Marker", "last"))
			var hook giveUps
			tt.policy.OnGiveUp = hook.record
			client, _ := newClient(t, tt.policy)
			req := newRequest(t, tt.method, srv.URL, strings.NewReader("body"))
			if tt.ctxTimeout > 0 {
				ctx, cancel := context.WithTimeout(context.Background(), tt.ctxTimeout)
				defer cancel()
				req = req.WithContext(ctx)
			}

			resp, body, err := do(t, client, req)

			require.NoError(t, err, "a give-up on a response returns it with a nil error")
			assert.Equal(t, 503, resp.StatusCode)
			assert.Empty(t, body)
			assert.Equal(t, tt.wantAttempts, srv.Count())
			events := hook.all()
			require.Len(t, events, 1, "OnGiveUp is called exactly once")
			ev := events[0]
			assert.Same(t, tt.wantReason, ev.Reason, "Reason is the sentinel itself")
			assert.Equal(t, tt.wantAttempts, ev.Attempts)
			assert.Same(t, req, ev.Request, "Request is the caller's own")
			require.NotNil(t, ev.Response)
			assert.Equal(t, "last", ev.Response.Header.Get("X-Marker"))
			assert.NoError(t, ev.Err)
			assert.Equal(t, tt.wantServer > 0, ev.HasRetryAfter)
			assert.Equal(t, tt.wantServer, ev.RetryAfter)
			if tt.wantServer > 0 {
				assert.Equal(t, "Retry-After", ev.RetryAfterHeader)
			}
		})
	}
}

func TestEveryGiveUpOnAnErrorIsAGiveUpError(t *testing.T) {
	tests := []struct {
		name         string
		policy       retryhttp.Policy
		method       string
		body         io.Reader // not replayable: no GetBody
		wantReason   error
		wantAttempts int
	}{
		{"attempts used up", retryhttp.Policy{MaxAttempts: 2}, "GET", nil, retryhttp.ErrAttemptsUsedUp, 2},
		// A refused connection cost the server nothing: even an empty
		// budget lets it be retried (see TestBudgetEmptyAfterADroppedConnection).
		{"budget empty", retryhttp.Policy{Budget: retryhttp.NewBudget(0, 0)}, "GET", nil, retryhttp.ErrAttemptsUsedUp, 4},
		{"MaxElapsed", retryhttp.Policy{MaxElapsed: time.Millisecond}, "GET", nil, retryhttp.ErrMaxElapsed, 1},
		// A refused connection proves the POST was never sent: retried.
		{"POST never sent", retryhttp.Policy{}, "POST", nil, retryhttp.ErrAttemptsUsedUp, 4},
		{"POST, body not replayable", retryhttp.Policy{}, "POST", io.MultiReader(strings.NewReader("x")), retryhttp.ErrBodyNotReplayable, 1},
		{"backoff stop", retryhttp.Policy{Backoff: func() backoff.BackOff { return &backoff.StopBackOff{} }}, "GET", nil, retryhttp.ErrBackoffStop, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hook giveUps
			tt.policy.OnGiveUp = hook.record
			client, _ := newClient(t, tt.policy)

			_, err := client.Do(newRequest(t, tt.method, refusedURL(t), tt.body))

			require.Error(t, err)
			var giveUp *retryhttp.GiveUpError
			require.ErrorAs(t, err, &giveUp)
			assert.Equal(t, tt.wantAttempts, giveUp.Attempts)
			assert.Same(t, tt.wantReason, giveUp.Reason)
			assert.ErrorIs(t, err, tt.wantReason)
			assert.ErrorIs(t, err, syscall.ECONNREFUSED, "the cause is still found")
			assert.ErrorIs(t, giveUp.Err, syscall.ECONNREFUSED)
			events := hook.all()
			require.Len(t, events, 1)
			assert.Same(t, tt.wantReason, events[0].Reason)
			assert.Nil(t, events[0].Response)
			assert.ErrorIs(t, events[0].Err, syscall.ECONNREFUSED)
			assert.Equal(t, tt.wantAttempts, events[0].Attempts)
		})
	}
}

func TestNoGiveUpForSuccessOrAnOutcomeNotRetryable(t *testing.T) {
	tests := []struct {
		name    string
		script  []retrytest.Answer
		method  string
		wantErr bool
	}{
		{"first attempt succeeds", []retrytest.Answer{retrytest.OK("ok")}, "GET", false},
		{"a retry succeeds", []retrytest.Answer{retrytest.Unavailable(0), retrytest.OK("ok")}, "GET", false},
		{"404", []retrytest.Answer{retrytest.Reply(404, "")}, "GET", false},
		{"404 after a retry", []retrytest.Answer{retrytest.Unavailable(0), retrytest.Reply(404, "")}, "GET", false},
		{"POST that succeeds", []retrytest.Answer{retrytest.OK("ok")}, "POST", false},
		{"POST answered 500", []retrytest.Answer{retrytest.Reply(500, "")}, "POST", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t, tt.script...)
			var hook giveUps
			client, _ := newClient(t, retryhttp.Policy{OnGiveUp: hook.record})
			_, _, err := do(t, client, newRequest(t, tt.method, srv.URL, nil))
			require.NoError(t, err)
			assert.Empty(t, hook.all())
		})
	}
	t.Run("an error never worth retrying is returned as it is", func(t *testing.T) {
		var hook giveUps
		client, _ := newClient(t, retryhttp.Policy{OnGiveUp: hook.record})
		_, err := client.Get("ftp://example.invalid/")
		require.Error(t, err)
		var giveUp *retryhttp.GiveUpError
		assert.False(t, errors.As(err, &giveUp))
		assert.Empty(t, hook.all())
	})
}

func TestCancelledWaitIsAGiveUpWithTheContextsError(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(10 * time.Second))
	var hook giveUps
	client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{OnGiveUp: hook.record}}}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)

	_, err := client.Do(newRequest(t, "GET", srv.URL, nil).WithContext(ctx))

	require.Error(t, err)
	var giveUp *retryhttp.GiveUpError
	require.ErrorAs(t, err, &giveUp)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Same(t, context.Canceled, giveUp.Reason)
	assert.Equal(t, 1, giveUp.Attempts)
	events := hook.all()
	require.Len(t, events, 1)
	assert.Same(t, context.Canceled, events[0].Reason)
	assert.True(t, events[0].HasRetryAfter)
	assert.Equal(t, 10*time.Second, events[0].RetryAfter)
}

func TestAttemptNumbers(t *testing.T) {
	srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.Drop(), retrytest.OK("ok"))
	var mu sync.Mutex
	var seen []int
	base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
		mu.Lock()
		seen = append(seen, retryhttp.Attempt(req.Context()))
		mu.Unlock()
		return newBase(t).RoundTrip(req)
	})
	client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{Clock: retrytest.NewClock(t)}}}

	resp, _, err := do(t, client, newRequest(t, "GET", srv.URL, nil))

	require.NoError(t, err)
	assert.Equal(t, []int{1, 2, 3}, seen)
	assert.Equal(t, 3, retryhttp.Attempt(resp.Request.Context()), "the final response's request carries its number")
	assert.Equal(t, 1, retryhttp.Attempt(context.Background()), "a context without a number means 1")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func TestGiveUpErrorMessage(t *testing.T) {
	err := &retryhttp.GiveUpError{Attempts: 3, Reason: retryhttp.ErrBudgetEmpty, Err: syscall.ECONNRESET}
	assert.Equal(t, "retryhttp: gave up after 3 attempts (retry budget empty): connection reset by peer", err.Error())
	err = &retryhttp.GiveUpError{Attempts: 1, Reason: context.Canceled}
	assert.Equal(t, "retryhttp: gave up after 1 attempt: context canceled", err.Error())
	assert.ErrorIs(t, err, context.Canceled)
}

// A retryable response that arrives just as the caller's context ends is a
// give-up, reported exactly once with the context's own error, whether it
// is the first attempt's or a retry's.
func TestContextEndingAsARetryableResponseArrivesIsAGiveUp(t *testing.T) {
	for _, tt := range []struct {
		name     string
		method   string
		cancelOn int // the attempt whose answer comes as the context ends
	}{
		{"first attempt", "GET", 1},
		{"a retry", "GET", 2},
		{"first attempt, not resendable", "POST", 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
			var hook giveUps
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			real := newBase(t)
			base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
				resp, err := real.RoundTrip(req)
				if retryhttp.Attempt(req.Context()) == tt.cancelOn {
					cancel()
				}
				return resp, err
			})
			client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
				Clock: retrytest.NewClock(t), OnGiveUp: hook.record, Budget: retryhttp.UnlimitedBudget(),
			}}}

			resp, err := client.Do(newRequest(t, tt.method, srv.URL, nil).WithContext(ctx))

			require.NoError(t, err, "the retryable response is returned whole")
			defer resp.Body.Close()
			assert.Equal(t, 503, resp.StatusCode)
			assert.Equal(t, tt.cancelOn, srv.Count())
			events := hook.all()
			require.Len(t, events, 1, "OnGiveUp exactly once")
			assert.Same(t, context.Canceled, events[0].Reason)
			assert.Equal(t, tt.cancelOn, events[0].Attempts)
			assert.Same(t, resp, events[0].Response)
		})
	}
}

// wrappingClock is a fake clock whose waits end only when their context
// is done, returning an error that wraps the context's, as the Clock
// contract allows; it calls before at the start of each wait, so that a
// test can end the wait then, with no real time played.
type wrappingClock struct{ before func() }

func (wrappingClock) Now() time.Time { return time.Now() }

func (c wrappingClock) Sleep(ctx context.Context, d time.Duration) error {
	c.before()
	<-ctx.Done()
	return fmt.Errorf("wrapping clock: sleep of %v cut short: %w", d, ctx.Err())
}

// The reason of a wait cut short is the context's own error, even when the
// Clock's Sleep returns a wrapper of it. The context ends as the wait
// starts, after the first attempt.
func TestCancelledWaitReasonIsTheContextsOwnError(t *testing.T) {
	for _, tt := range []struct {
		name string
		ctx  func() (ctx context.Context, end func())
		want error
	}{
		{"cancelled", func() (context.Context, func()) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
		{"deadline", func() (context.Context, func()) {
			// A deadline the Transport cannot see ends the wait.
			ctx := newExpiringContext()
			return ctx, ctx.expire
		}, context.DeadlineExceeded},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(5 * time.Second))
			var hook giveUps
			ctx, end := tt.ctx()
			defer end()
			client := &http.Client{Transport: &retryhttp.Transport{Base: newBase(t), Policy: retryhttp.Policy{
				Clock: wrappingClock{before: end}, OnGiveUp: hook.record,
			}}}

			_, err := client.Do(newRequest(t, "GET", srv.URL, nil).WithContext(ctx))

			var giveUp *retryhttp.GiveUpError
			require.ErrorAs(t, err, &giveUp)
			assert.Equal(t, 1, srv.Count(), "ended in the wait after the first attempt")
			assert.True(t, giveUp.Reason == tt.want, "GiveUpError.Reason == the context's error: %#v", giveUp.Reason)
			events := hook.all()
			require.Len(t, events, 1)
			assert.True(t, events[0].Reason == tt.want, "GiveUpEvent.Reason == the context's error: %#v", events[0].Reason)
		})
	}
}

// RetryEvent.Request is the request of the attempt that failed, so that
// its context tells that attempt's number; GiveUpEvent.Request is the
// caller's.
func TestRetryEventRequestIsTheFailedAttempts(t *testing.T) {
	for _, timeout := range []time.Duration{0, 5 * time.Second} {
		t.Run(fmt.Sprintf("AttemptTimeout %v", timeout), func(t *testing.T) {
			srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
			var mu sync.Mutex
			var sent []*http.Request
			var events []retryhttp.RetryEvent
			real := newBase(t)
			base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
				mu.Lock()
				sent = append(sent, req)
				mu.Unlock()
				return real.RoundTrip(req)
			})
			var hook giveUps
			client := &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
				Clock: retrytest.NewClock(t), AttemptTimeout: timeout, Budget: retryhttp.UnlimitedBudget(),
				OnRetry:  func(ev retryhttp.RetryEvent) { mu.Lock(); events = append(events, ev); mu.Unlock() },
				OnGiveUp: hook.record,
			}}}
			req := newRequest(t, "PUT", srv.URL, strings.NewReader("body"))

			resp, _, err := do(t, client, req)

			require.NoError(t, err)
			assert.Equal(t, 503, resp.StatusCode)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, events, 3)
			require.Len(t, sent, 4)
			for i, ev := range events {
				assert.Equal(t, i+1, ev.Attempt)
				assert.Same(t, sent[i], ev.Request, "the request of attempt %d", ev.Attempt)
				assert.Equal(t, ev.Attempt, retryhttp.Attempt(ev.Request.Context()))
			}
			require.Len(t, hook.all(), 1)
			assert.Same(t, req, hook.all()[0].Request, "the caller's request")
		})
	}
}

func respond(req *http.Request, code int) *http.Response {
	return &http.Response{StatusCode: code, Header: http.Header{}, Body: http.NoBody, Request: req}
}

func TestNotResendableSaysWhichRuleApplied(t *testing.T) {
	file := func(t *testing.T) io.Reader {
		f, err := os.CreateTemp(t.TempDir(), "body")
		require.NoError(t, err)
		_, err = f.WriteString("body")
		require.NoError(t, err)
		_, err = f.Seek(0, io.SeekStart)
		require.NoError(t, err)
		return f
	}
	pipe := func(t *testing.T) io.Reader {
		pr, pw := io.Pipe()
		go func() {
			_, _ = pw.Write([]byte("body"))
			pw.Close()
		}()
		return pr
	}
	nopCloser := func(t *testing.T) io.Reader { return io.NopCloser(strings.NewReader("body")) }
	// The reason says how to make the body replayable.
	const bodyFix = "body cannot be replayed (no GetBody): use a bytes, strings or file reader, or set GetBody"
	replayable := func(t *testing.T) io.Reader { return strings.NewReader("body") }
	tests := []struct {
		name    string
		method  string
		body    func(*testing.T) io.Reader
		want    error
		wantMsg string
	}{
		{"POST without a key", "POST", replayable, retryhttp.ErrNotIdempotent, "method not idempotent"},
		{"PATCH without a key", "PATCH", replayable, retryhttp.ErrNotIdempotent, "method not idempotent"},
		{"PUT of an *os.File", "PUT", file, retryhttp.ErrBodyNotReplayable, bodyFix},
		{"PUT of an io.Pipe", "PUT", pipe, retryhttp.ErrBodyNotReplayable, bodyFix},
		{"PUT of a NopCloser", "PUT", nopCloser, retryhttp.ErrBodyNotReplayable, bodyFix},
		{"POST of a NopCloser", "POST", nopCloser, retryhttp.ErrBodyNotReplayable, bodyFix},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
			var hook giveUps
			client, _ := newClient(t, retryhttp.Policy{OnGiveUp: hook.record})

			resp, _, err := do(t, client, newRequest(t, tt.method, srv.URL, tt.body(t)))

			require.NoError(t, err)
			assert.Equal(t, 503, resp.StatusCode)
			assert.Equal(t, 1, srv.Count())
			events := hook.all()
			require.Len(t, events, 1)
			reason := events[0].Reason
			assert.Same(t, tt.want, reason)
			assert.ErrorIs(t, reason, retryhttp.ErrNotResendable, "existing checks still match")
			assert.Contains(t, reason.Error(), tt.wantMsg)
			assert.True(t, strings.HasPrefix(reason.Error(), "retryhttp: request may not be sent again: "), reason.Error())
			other := retryhttp.ErrNotIdempotent
			if tt.want == other {
				other = retryhttp.ErrBodyNotReplayable
			}
			assert.NotErrorIs(t, reason, other, "the two rules are told apart")
		})
	}
}

func TestOutcomeOfTheFinalResponse(t *testing.T) {
	tests := []struct {
		name         string
		policy       retryhttp.Policy
		method       string
		script       []retrytest.Answer
		otherwise    retrytest.Answer
		wantStatus   int
		wantAttempts int
		wantReason   error
	}{
		{"first attempt succeeds", retryhttp.Policy{}, "GET", nil, retrytest.OK("ok"), 200, 1, nil},
		{"not worth retrying", retryhttp.Policy{}, "GET", nil, retrytest.Reply(404, "no"), 404, 1, nil},
		{"success after retries", retryhttp.Policy{}, "GET",
			[]retrytest.Answer{retrytest.Unavailable(time.Second), retrytest.TooManyRequests(0)}, retrytest.OK("ok"), 200, 3, nil},
		{"attempts used up", retryhttp.Policy{MaxAttempts: 3}, "GET", nil, retrytest.Unavailable(time.Second), 503, 3, retryhttp.ErrAttemptsUsedUp},
		{"server's wait too long", retryhttp.Policy{}, "GET", nil, retrytest.TooManyRequests(time.Hour), 429, 1, retryhttp.ErrRetryAfterTooLong},
		{"GitHub's 403 rate limit too long", retryhttp.Policy{}, "GET", nil, retrytest.RateLimited(2*time.Hour, retrytest.GitHub), 403, 1, retryhttp.ErrRetryAfterTooLong},
		{"budget empty after one retry", retryhttp.Policy{Budget: retryhttp.NewBudget(0, 1)}, "GET", nil, retrytest.Unavailable(0), 503, 2, retryhttp.ErrBudgetEmpty},
		{"POST not resent", retryhttp.Policy{}, "POST", nil, retrytest.Unavailable(time.Second), 503, 1, retryhttp.ErrNotIdempotent},
	}
	for _, tt := range tests {
		for _, timeout := range []time.Duration{0, time.Minute} {
			t.Run(fmt.Sprintf("%s/Client.Timeout=%v", tt.name, timeout), func(t *testing.T) {
				srv := retrytest.NewServer(t, tt.script...).Otherwise(tt.otherwise)
				p := tt.policy
				if p.Budget != nil {
					p.Budget = retryhttp.NewBudget(0, 1) // a fresh one for each run
				}
				client, clock := newClient(t, p)
				srv.UseClock(clock)
				client.Timeout = timeout
				req := newRequest(t, tt.method, srv.URL, strings.NewReader("body"))
				reqCtx := req.Context()

				resp, _, err := do(t, client, req)

				require.NoError(t, err)
				assert.Equal(t, tt.wantStatus, resp.StatusCode)
				attempts, reason := retryhttp.Outcome(resp)
				assert.Equal(t, tt.wantAttempts, attempts)
				assert.Equal(t, srv.Count(), attempts, "the attempts the server saw")
				if tt.wantReason == nil {
					assert.NoError(t, reason)
				} else {
					assert.Same(t, tt.wantReason, reason)
				}
				assert.Equal(t, tt.wantAttempts, retryhttp.Attempt(resp.Request.Context()), "Attempt agrees")
				assert.Equal(t, reqCtx, req.Context(), "the caller's request is left alone")
			})
		}
	}
}

func TestOutcomeOfAResponseNotFromATransport(t *testing.T) {
	attempts, reason := retryhttp.Outcome(nil)
	assert.Equal(t, 0, attempts)
	assert.NoError(t, reason)
	attempts, reason = retryhttp.Outcome(&http.Response{StatusCode: 503})
	assert.Equal(t, 1, attempts)
	assert.NoError(t, reason)
	req := newRequest(t, "GET", "http://example.invalid/", nil)
	attempts, reason = retryhttp.Outcome(&http.Response{StatusCode: 503, Request: req})
	assert.Equal(t, 1, attempts)
	assert.NoError(t, reason)
}

func TestGiveUpEventCorrelatesThroughTheContext(t *testing.T) {
	type requestID struct{}
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(time.Second))
	var events []retryhttp.GiveUpEvent
	client, clock := newClient(t, retryhttp.Policy{MaxAttempts: 2, OnGiveUp: func(ev retryhttp.GiveUpEvent) {
		events = append(events, ev)
	}})
	srv.UseClock(clock)
	client.Timeout = time.Minute
	req := newRequest(t, "GET", srv.URL, nil)
	req = req.WithContext(context.WithValue(req.Context(), requestID{}, "req-42"))

	resp, _, err := do(t, client, req)

	require.NoError(t, err)
	require.Len(t, events, 1)
	ev := events[0]
	assert.NotSame(t, req, ev.Request, "with Client.Timeout, net/http passes the Transport a copy")
	assert.Equal(t, "req-42", ev.Request.Context().Value(requestID{}))
	_, reason := retryhttp.Outcome(ev.Response)
	assert.Same(t, ev.Reason, reason)
	_, reason = retryhttp.Outcome(resp)
	assert.Same(t, retryhttp.ErrAttemptsUsedUp, reason)
}

// Outcome counts the attempts of a response from a Base that leaves
// resp.Request nil, as a RoundTripper need not set it: a give-up and a
// success after retries alike.
func TestOutcomeWhenBaseSetsNoRequest(t *testing.T) {
	for _, tt := range []struct {
		name       string
		statuses   []int
		wantStatus int
		wantReason error
	}{
		{"success after retries", []int{503, 503, 200}, 200, nil},
		{"give-up", []int{503, 503, 503}, 503, retryhttp.ErrAttemptsUsedUp},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			base := roundTripFunc(func(req *http.Request) (*http.Response, error) {
				n := calls.Add(1)
				return &http.Response{StatusCode: tt.statuses[n-1], Header: http.Header{}, Body: http.NoBody}, nil
			})
			rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
				MaxAttempts: 3, Clock: retrytest.NewClock(t), Budget: retryhttp.UnlimitedBudget(),
			}}
			req := newRequest(t, "GET", "http://example.invalid/", nil)

			resp, err := rt.RoundTrip(req)

			require.NoError(t, err)
			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			attempts, reason := retryhttp.Outcome(resp)
			assert.Equal(t, 3, attempts)
			assert.Equal(t, tt.wantReason, reason)
		})
	}
}
