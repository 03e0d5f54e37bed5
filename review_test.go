package retryhttp_test

import (
	"bufio"
	"context"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// TestHoldBeyondWhatADurationHoldsIsNotWaitedFor: a 429 whose Retry-After
// is beyond what a time.Duration holds ends the retries even under a
// MaxRetryAfter and MaxElapsed of math.MaxInt64 (see Policy.MaxRetryAfter);
// the hold it leaves must not keep the next request back for 292 years
// either: that request is sent as usual, as for any hold that does not
// fit the limits.
func TestHoldBeyondWhatADurationHoldsIsNotWaitedFor(t *testing.T) {
	srv := retrytest.NewServer(t,
		retrytest.Reply(http.StatusTooManyRequests, "").WithHeader("Retry-After", "99999999999999999999"),
		retrytest.OK("ok"),
	)
	var holds []retryhttp.HoldEvent
	client, clock := newClient(t, retryhttp.Policy{
		MaxRetryAfter: time.Duration(math.MaxInt64), MaxElapsed: time.Duration(math.MaxInt64),
		OnHold: func(ev retryhttp.HoldEvent) { holds = append(holds, ev) },
	})
	start := clock.Now()
	resp, err := client.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusTooManyRequests, resp.StatusCode)

	resp, err = client.Get(srv.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Less(t, clock.Now().Sub(start), time.Hour, "the fake clock moved by the hold's wait")
	assert.Empty(t, holds, "a hold not waited for kept nothing back")
}

// TestExtremeSettingsEndEveryRequest plays extreme Policies against named
// waits of every kind on the fake clock: each request ends, with the
// answer the script says, and never waits past what the server named and
// the limits allow.
func TestExtremeSettingsEndEveryRequest(t *testing.T) {
	huge := time.Duration(math.MaxInt64)
	past := time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat)
	cases := []struct {
		name   string
		p      retryhttp.Policy
		script []retrytest.Answer
		status int
	}{
		{"no limits, Retry-After 0", retryhttp.Policy{MaxAttempts: math.MaxInt, MaxElapsed: huge, MaxRetryAfter: huge, Budget: retryhttp.UnlimitedBudget()},
			[]retrytest.Answer{retrytest.Reply(503, "").WithHeader("Retry-After", "0"), retrytest.OK("ok")}, 200},
		{"no limits, HTTP-date in the past", retryhttp.Policy{MaxAttempts: math.MaxInt, MaxElapsed: huge, MaxRetryAfter: huge, Budget: retryhttp.UnlimitedBudget()},
			[]retrytest.Answer{retrytest.Reply(429, "").WithHeader("Retry-After", past), retrytest.OK("ok")}, 200},
		{"no limits, Retry-After huge", retryhttp.Policy{MaxAttempts: math.MaxInt, MaxElapsed: huge, MaxRetryAfter: huge, Budget: retryhttp.UnlimitedBudget()},
			[]retrytest.Answer{retrytest.Reply(503, "").WithHeader("Retry-After", "9223372036854775807"), retrytest.OK("ok")}, 503},
		{"no limits, hedged", retryhttp.Policy{MaxAttempts: math.MaxInt, MaxElapsed: huge, MaxRetryAfter: huge, Budget: retryhttp.UnlimitedBudget(),
			Hedge: &retryhttp.Hedge{Delay: time.Nanosecond, Max: math.MaxInt}},
			[]retrytest.Answer{retrytest.Reply(503, ""), retrytest.Reply(503, ""), retrytest.OK("ok")}, 200},
		{"one attempt", retryhttp.Policy{MaxAttempts: 1, Hedge: &retryhttp.Hedge{Delay: time.Nanosecond}},
			[]retrytest.Answer{retrytest.Reply(503, ""), retrytest.OK("ok")}, 503},
		{"rate-limit reset far off", retryhttp.Policy{MaxElapsed: huge, MaxRetryAfter: huge, Budget: retryhttp.UnlimitedBudget()},
			[]retrytest.Answer{retrytest.Reply(429, "").WithHeader("X-RateLimit-Remaining", "0").WithHeader("X-RateLimit-Reset-After", "99999999999999999999"), retrytest.OK("ok")}, 429},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := retrytest.NewServer(t, tc.script...).Otherwise(retrytest.OK("ok"))
			client, _ := newClient(t, tc.p)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			require.NoError(t, err)
			resp, err := client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode)
			// A second request is not held past what a Duration holds.
			req, err = http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			require.NoError(t, err)
			resp, err = client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
		})
	}
}

// TestRetryOfARaceWhoseFirstCopyReachedTheServerTakesAToken: a race whose
// first attempt was written and then broke (EOF), and whose hedge's dial
// was refused later, ended in the refused dial; but the race reached the
// server, and the retry that follows it must take a token like the retry of
// that first attempt alone would.
func TestRetryOfARaceWhoseFirstCopyReachedTheServerTakesAToken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	// The order of events is made, not waited for: the first copy breaks
	// once the hedge has begun to dial, and the hedge's dial ends once the
	// race has taken in that break.
	hedgeDialing, firstJudged := make(chan struct{}), make(chan struct{})
	var processed atomic.Int32
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		ln.Close() // every later dial is refused
		_, _ = http.ReadRequest(bufio.NewReader(conn))
		processed.Add(1)
		select {
		case <-hedgeDialing: // the hedge goes out, and dials
		case <-time.After(5 * time.Second): // it never does: the test fails
		case <-t.Context().Done():
		}
		conn.Close() // the first copy breaks: EOF
	}()
	t.Cleanup(func() { ln.Close() })
	var dials atomic.Int32
	var dialing sync.Once
	base := &http.Transport{DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
		if dials.Add(1) > 1 {
			dialing.Do(func() { close(hedgeDialing) })
			select {
			case <-firstJudged: // the hedge's dial ends after the first copy broke
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return (&net.Dialer{}).DialContext(ctx, network, a)
	}}
	t.Cleanup(base.CloseIdleConnections)
	var judged sync.Once
	retryable := func(resp *http.Response, err error) bool {
		if err != nil {
			// The first error the race takes in is the first copy's:
			// the hedge's dial is still held.
			judged.Do(func() { close(firstJudged) })
		}
		return retryhttp.DefaultRetryable(resp, err)
	}
	budget := retryhttp.NewFixedHostBudget(0.1, 3)
	rt := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
		Budget: budget, Clock: retrytest.NewClock(t), MaxAttempts: 3, Retryable: retryable,
		Hedge: &retryhttp.Hedge{Delay: 20 * time.Millisecond},
	}}
	url := "http://" + addr + "/"
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	_, err = rt.RoundTrip(req)
	require.Error(t, err)
	require.EqualValues(t, 1, processed.Load())
	// The hedge took one token; the retry after the race another.
	assert.Equal(t, 1.0, budget.TokensFor(url), "tokens left: %v", err)
}
