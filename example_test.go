package retryhttp_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
	"github.com/cenkalti/backoff/v4"
)

// flakyServer starts a server that answers 503 Service Unavailable, with no
// Retry-After, to its first `failures` requests, then 200 OK.
func flakyServer(failures int32) *httptest.Server {
	var hits atomic.Int32
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) <= failures {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "hello after", hits.Load()-1, "retries")
	}))
}

// Wrap an http.Client's transport; the zero Transport retries with the
// defaults over http.DefaultTransport. Here the Policy sets only a fake
// Clock from package retrytest, which plays the two waits at once; in real
// code, leave it out.
func Example() {
	srv := flakyServer(2)
	defer srv.Close()

	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{Clock: retrytest.NewClock(nil)}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.Status, ": ", string(body))
	// Output: 200 OK: hello after 2 retries
}

// Configure a Policy: more attempts, gateway errors retried on top of the
// default statuses (503, 429 and rate-limit 403s, which a custom list must
// name to keep), and a shorter limit on how long a server may ask the
// client to wait. The fake clock of package retrytest plays the waits
// between the attempts at once; leave Clock out to wait in real time.
func ExamplePolicy() {
	srv := flakyServer(2)
	defer srv.Close()

	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &retryhttp.Transport{
			Base: &http.Transport{MaxIdleConnsPerHost: 10},
			Policy: retryhttp.Policy{
				MaxAttempts:   5,
				MaxElapsed:    5 * time.Second,
				MaxRetryAfter: 2 * time.Second,
				Retryable:     retryhttp.RetryStatuses(503, 429, 403, 502, 504),
				Clock:         retrytest.NewClock(nil),
			},
		},
	}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}

// Retry a POST that the server deduplicates by its Idempotency-Key. Without
// the key, the POST would get exactly one attempt. (The fake clock of
// package retrytest plays the wait at once.)
func ExamplePolicy_idempotencyKey() {
	srv := flakyServer(1)
	defer srv.Close()

	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{Clock: retrytest.NewClock(nil)}}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/charges", strings.NewReader(`{"amount":100}`))
	req.Header.Set("Idempotency-Key", "order-4711")
	resp, err := client.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}

// Send a health check once, whatever the Policy: the 503 comes back at once
// rather than after the retries another request would make.
func ExampleNoRetry() {
	srv := flakyServer(1)
	defer srv.Close()

	client := &http.Client{Transport: &retryhttp.Transport{}}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/healthz", nil)
	resp, err := client.Do(req.WithContext(retryhttp.NoRetry(req.Context())))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	attempts, reason := retryhttp.Outcome(resp)
	fmt.Println(resp.Status, "after", attempts, "attempt:", reason)
	// Output: 503 Service Unavailable after 1 attempt: retryhttp: attempts used up
}

// Retry a POST that the caller knows is safe to send twice, without an
// Idempotency-Key; its body, a *strings.Reader, can be sent again. (The
// fake clock of package retrytest plays the wait at once.)
func ExampleIdempotent() {
	srv := flakyServer(1)
	defer srv.Close()

	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{Clock: retrytest.NewClock(nil)}}}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders/4711/cancel", strings.NewReader(`{"why":"late"}`))
	resp, err := client.Do(req.WithContext(retryhttp.Idempotent(req.Context())))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.Status, ": ", string(body))
	// Output: 200 OK: hello after 1 retries
}

// Log every retry with log/slog through the OnRetry hook. (The fake clock
// of package retrytest plays the waits at once.)
func ExamplePolicy_onRetry() {
	srv := flakyServer(2)
	defer srv.Close()

	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keep the example's output stable
			}
			return a
		},
	}))
	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{
		Clock: retrytest.NewClock(nil),
		OnRetry: func(ev retryhttp.RetryEvent) {
			// ev.Wait, the jittered wait before the retry, is left out
			// of this example to keep its output stable.
			attrs := []any{"method", ev.Request.Method, "attempt", ev.Attempt}
			if ev.Err != nil {
				attrs = append(attrs, "error", ev.Err)
			} else {
				attrs = append(attrs, "status", ev.Response.StatusCode)
			}
			if ev.HasRetryAfter {
				attrs = append(attrs, "retry_after", ev.RetryAfter)
			}
			logger.Info("retrying", attrs...)
		},
	}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output:
	// level=INFO msg=retrying method=GET attempt=1 status=503
	// level=INFO msg=retrying method=GET attempt=2 status=503
	// 200 OK
}

// Share one Budget between Transports, so that together they make at most 5
// retries, plus one for every ten requests the server answers, however many
// Transports there are: against a server that answers nothing, the burst is
// all they get.
func ExampleNewBudget() {
	srv := flakyServer(1 << 30) // never recovers
	defer srv.Close()

	budget := retryhttp.NewBudget(0.1, 5)
	policy := retryhttp.Policy{
		Budget:      budget,
		MaxAttempts: 10,
		Backoff:     func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) },
	}
	users := &http.Client{Transport: &retryhttp.Transport{Policy: policy}}
	orders := &http.Client{Transport: &retryhttp.Transport{Policy: policy}}

	for _, client := range []*http.Client{users, orders} {
		resp, err := client.Get(srv.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.Status, "with", budget.Tokens(), "tokens left")
	}
	// Output:
	// 503 Service Unavailable with 0 tokens left
	// 503 Service Unavailable with 0 tokens left
}

// Turn the retry budget off, leaving the retries to the Policy's limits.
func ExampleUnlimitedBudget() {
	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{
		Budget: retryhttp.UnlimitedBudget(),
	}}}
	_ = client
	fmt.Println(retryhttp.UnlimitedBudget().Tokens())
	// Output: +Inf
}

// Stub a server in a test with httptest: it answers 503 with Retry-After,
// then 200, and the client waits as told before its one retry, on a fake
// clock from package retrytest, which plays the wait at once and records
// it. (Package retrytest also offers a scripted server.)
func ExampleTransport_stubServer() {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "back")
	}))
	defer srv.Close()

	clock := retrytest.NewClock(nil) // in a test, pass t
	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{Clock: clock}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s %q after %d requests; waited at least 1s: %v\n",
		resp.Status, body, hits.Load(), clock.Waited() >= time.Second)
	// Output: 200 OK "back" after 2 requests; waited at least 1s: true
}

func ExampleParseRetryAfter() {
	now := time.Date(1994, time.November, 6, 8, 49, 7, 0, time.UTC)
	for _, v := range []string{
		"120",
		"Sun, 06 Nov 1994 08:49:37 GMT",
		"Sunday, 06-Nov-94 08:49:37 GMT",
		"Sun Nov  6 08:49:37 1994",
		"-1",
		"in a minute",
	} {
		d, ok := retryhttp.ParseRetryAfter(v, now)
		fmt.Printf("%-32q %v %v\n", v, d, ok)
	}
	// Output:
	// "120"                            2m0s true
	// "Sun, 06 Nov 1994 08:49:37 GMT"  30s true
	// "Sunday, 06-Nov-94 08:49:37 GMT" 30s true
	// "Sun Nov  6 08:49:37 1994"       30s true
	// "-1"                             0s false
	// "in a minute"                    0s false
}

func ExampleRetryAfter() {
	resp := &http.Response{Header: http.Header{
		"Date":        {"Sun, 06 Nov 1994 08:49:07 GMT"},
		"Retry-After": {"Sun, 06 Nov 1994 08:49:37 GMT"},
	}}
	// The client's clock is an hour fast; the response's Date header keeps
	// the wait right.
	clientNow := time.Date(1994, time.November, 6, 9, 49, 7, 0, time.UTC)
	d, ok := retryhttp.RetryAfter(resp, clientNow)
	fmt.Println(d, ok)
	// Output: 30s true
}
