package retryhttp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// giveUps records every GiveUpEvent.
type giveUps struct {
	mu     sync.Mutex
	events []retryhttp.GiveUpEvent
}

func (g *giveUps) record(ev retryhttp.GiveUpEvent) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.events = append(g.events, ev)
}

func (g *giveUps) all() []retryhttp.GiveUpEvent {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]retryhttp.GiveUpEvent(nil), g.events...)
}

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
		{"POST", retryhttp.Policy{}, "POST", retrytest.Unavailable(time.Second), 0, retryhttp.ErrNotResendable, 1, time.Second},
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
		wantReason   error
		wantAttempts int
	}{
		{"attempts used up", retryhttp.Policy{MaxAttempts: 2}, "GET", retryhttp.ErrAttemptsUsedUp, 2},
		{"budget empty", retryhttp.Policy{Budget: retryhttp.NewBudget(0, 0)}, "GET", retryhttp.ErrBudgetEmpty, 1},
		{"MaxElapsed", retryhttp.Policy{MaxElapsed: time.Millisecond}, "GET", retryhttp.ErrMaxElapsed, 1},
		{"POST", retryhttp.Policy{}, "POST", retryhttp.ErrNotResendable, 1},
		{"backoff stop", retryhttp.Policy{Backoff: func() backoff.BackOff { return &backoff.StopBackOff{} }}, "GET", retryhttp.ErrBackoffStop, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hook giveUps
			tt.policy.OnGiveUp = hook.record
			client, _ := newClient(t, tt.policy)

			_, err := client.Do(newRequest(t, tt.method, refusedURL(t), nil))

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
