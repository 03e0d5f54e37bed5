package retryhttp_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// A health check sent under NoRetry gets one attempt: the 503 comes back at
// once, reported to OnGiveUp as attempts used up, as under MaxAttempts: 1,
// and no MaxAttempts override, before or after it, adds attempts.
func TestNoRetrySendsOnceAndReturnsThe503(t *testing.T) {
	tests := []struct {
		name string
		ctx  func(context.Context) context.Context
	}{
		{"NoRetry", retryhttp.NoRetry},
		{"NoRetry, then MaxAttempts 5", func(ctx context.Context) context.Context {
			return retryhttp.MaxAttempts(retryhttp.NoRetry(ctx), 5)
		}},
		{"MaxAttempts 5, then NoRetry", func(ctx context.Context) context.Context {
			return retryhttp.NoRetry(retryhttp.MaxAttempts(ctx, 5))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
			var hook giveUps
			client, clock := newClient(t, retryhttp.Policy{OnGiveUp: hook.record})
			req := newRequest(t, http.MethodGet, srv.URL+"/healthz", nil)

			resp, _, err := do(t, client, req.WithContext(tt.ctx(req.Context())))

			require.NoError(t, err)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.Equal(t, 1, srv.Count())
			assert.Empty(t, clock.Waits(), "nothing waited for")
			events := hook.all()
			require.Len(t, events, 1)
			assert.Equal(t, 1, events[0].Attempts)
			assert.Same(t, retryhttp.ErrAttemptsUsedUp, events[0].Reason)
			attempts, reason := retryhttp.Outcome(resp)
			assert.Equal(t, 1, attempts)
			assert.Same(t, retryhttp.ErrAttemptsUsedUp, reason)
		})
	}
}

// A POST the caller marks Idempotent is retried after a 503, its body sent
// whole again; the same POST without the mark gets one attempt.
func TestIdempotentPOSTIsRetriedAfterA503(t *testing.T) {
	tests := []struct {
		name       string
		ctx        func(context.Context) context.Context
		wantStatus int
		wantCount  int
		wantReason error
	}{
		{"Idempotent", retryhttp.Idempotent, http.StatusOK, 2, nil},
		{"not marked", func(ctx context.Context) context.Context { return ctx }, http.StatusServiceUnavailable, 1, retryhttp.ErrNotIdempotent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t, retrytest.Unavailable(0), retrytest.OK("done"))
			var hook giveUps
			client, _ := newClient(t, retryhttp.Policy{OnGiveUp: hook.record})
			req := newRequest(t, http.MethodPost, srv.URL+"/orders/4711/cancel", strings.NewReader(`{"why":"late"}`))

			resp, _, err := do(t, client, req.WithContext(tt.ctx(req.Context())))

			require.NoError(t, err)
			assert.Equal(t, tt.wantStatus, resp.StatusCode)
			require.Equal(t, tt.wantCount, srv.Count())
			for _, got := range srv.Requests() {
				assert.Equal(t, `{"why":"late"}`, string(got.Body))
			}
			_, reason := retryhttp.Outcome(resp)
			assert.Equal(t, tt.wantReason, reason)
			if tt.wantReason == nil {
				assert.Empty(t, hook.all())
			}
		})
	}
}

// Idempotent does not make a body replayable: a POST whose body cannot be
// sent again still gets one attempt, and says why.
func TestIdempotentPOSTWithABodyThatCannotBeReplayedIsSentOnce(t *testing.T) {
	srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
	client, _ := newClient(t, retryhttp.Policy{})
	req := newRequest(t, http.MethodPost, srv.URL, io.NopCloser(strings.NewReader(`{"a":1}`)))

	resp, _, err := do(t, client, req.WithContext(retryhttp.Idempotent(req.Context())))

	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, 1, srv.Count())
	_, reason := retryhttp.Outcome(resp)
	assert.Same(t, retryhttp.ErrBodyNotReplayable, reason)
}

// MaxAttempts(ctx, n) replaces the Policy's MaxAttempts for one request,
// lower or higher; 0 means the Policy's; the later of two overrides wins.
func TestMaxAttemptsOverridesThePolicyForOneRequest(t *testing.T) {
	tests := []struct {
		name       string
		policyMax  int
		ctx        func(context.Context) context.Context
		wantCounts int
	}{
		{"2 under the default 4", 0, func(ctx context.Context) context.Context { return retryhttp.MaxAttempts(ctx, 2) }, 2},
		{"3 over a Policy's 1", 1, func(ctx context.Context) context.Context { return retryhttp.MaxAttempts(ctx, 3) }, 3},
		{"0 means the Policy's", 3, func(ctx context.Context) context.Context { return retryhttp.MaxAttempts(ctx, 0) }, 3},
		{"the later wins", 0, func(ctx context.Context) context.Context {
			return retryhttp.MaxAttempts(retryhttp.MaxAttempts(ctx, 3), 2)
		}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := retrytest.NewServer(t).Otherwise(retrytest.Unavailable(0))
			client, _ := newClient(t, retryhttp.Policy{MaxAttempts: tt.policyMax, Budget: retryhttp.UnlimitedBudget()})
			req := newRequest(t, http.MethodGet, srv.URL, nil)

			resp, _, err := do(t, client, req.WithContext(tt.ctx(req.Context())))

			require.NoError(t, err)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.Equal(t, tt.wantCounts, srv.Count())
			attempts, reason := retryhttp.Outcome(resp)
			assert.Equal(t, tt.wantCounts, attempts)
			assert.Same(t, retryhttp.ErrAttemptsUsedUp, reason)
		})
	}
}

// An override cannot set what Validate would reject: MaxAttempts(ctx, -1)
// fails the request before anything is sent, with an error that names the
// override, even under NoRetry.
func TestNegativeMaxAttemptsOverrideIsRejected(t *testing.T) {
	for name, ctx := range map[string]context.Context{
		"MaxAttempts -1":          retryhttp.MaxAttempts(context.Background(), -1),
		"NoRetry, MaxAttempts -1": retryhttp.MaxAttempts(retryhttp.NoRetry(context.Background()), -1),
	} {
		t.Run(name, func(t *testing.T) {
			srv := retrytest.NewServer(t)
			var hook giveUps
			client, _ := newClient(t, retryhttp.Policy{OnGiveUp: hook.record})
			body := &recordedBody{ReadCloser: io.NopCloser(strings.NewReader("x"))}
			req := newRequest(t, http.MethodPut, srv.URL, body).WithContext(ctx)

			resp, err := client.Do(req)

			require.Error(t, err)
			assert.Nil(t, resp)
			assert.Contains(t, err.Error(), "retryhttp: invalid MaxAttempts(ctx, -1) override: must not be negative")
			assert.Zero(t, srv.Count(), "nothing is sent")
			assert.Empty(t, hook.all())
			assert.True(t, body.closed.Load(), "the request body is closed, as the RoundTripper contract asks")
		})
	}
}
