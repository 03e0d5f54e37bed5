package retrytest_test

import (
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// Play "503 with Retry-After: 120, then 200" in virtual time: the request
// returns at once, and the clock shows the wait the Transport chose. In a
// test, pass t to NewClock and NewServer instead of nil, and they clean up
// after themselves.
func Example() {
	clock := retrytest.NewClock(nil)
	srv := retrytest.NewServer(nil,
		retrytest.Unavailable(120*time.Second),
		retrytest.OK("back"),
	).UseClock(clock)
	defer srv.Close()

	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{
		Clock:         clock,
		MaxRetryAfter: 5 * time.Minute,
		MaxElapsed:    5 * time.Minute,
	}}}
	started := time.Now()
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)

	waited := clock.Waits()[0]
	fmt.Println(resp.Status, string(body))
	fmt.Println("requests:", srv.Count())
	fmt.Println("waited as told:", waited >= 120*time.Second && waited <= 144*time.Second)
	fmt.Println("in real time under a second:", time.Since(started) < time.Second)
	// Output:
	// 200 OK back
	// requests: 2
	// waited as told: true
	// in real time under a second: true
}

// Check what reached the server: a POST without an Idempotency-Key is sent
// once, whatever the answer.
func ExampleServer_Requests() {
	srv := retrytest.NewServer(nil, retrytest.Unavailable(time.Second)).Otherwise(retrytest.OK("unexpected"))
	defer srv.Close()

	client := &http.Client{Transport: &retryhttp.Transport{}}
	resp, err := client.Post(srv.URL+"/charges", "application/json", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	for _, r := range srv.Requests() {
		fmt.Println(r.Method, r.Path)
	}
	fmt.Println(resp.Status)
	// Output:
	// POST /charges
	// 503 Service Unavailable
}

// Give one path a script of its own; other paths get the default answer.
func ExampleServer_On() {
	srv := retrytest.NewServer(nil).
		On("/flaky", retrytest.Drop(), retrytest.OK("flaky, then fine")).
		Otherwise(retrytest.OK("steady"))
	defer srv.Close()

	base := &http.Transport{DisableKeepAlives: true}
	client := &http.Client{Transport: &retryhttp.Transport{
		Base:   base,
		Policy: retryhttp.Policy{Clock: retrytest.NewClock(nil)},
	}}
	// The flaky path first: the budget of a destination that has not
	// answered yet holds a burst of retries, while after a success it
	// holds what recent successes earned, a tenth of a retry for one.
	for _, path := range []string{"/flaky", "/steady"} {
		resp, err := client.Get(srv.URL + path)
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(path, string(body))
	}
	fmt.Println("requests:", srv.Count())
	// Output:
	// /flaky flaky, then fine
	// /steady steady
	// requests: 3
}

// Answer as GitHub does over its rate limit: a 403 whose X-RateLimit-Reset
// is a Unix time on the Server's clock, which a client reads back as a
// wait by measuring it against the Date header.
func ExampleRateLimited() {
	clock := retrytest.NewClock(nil)
	srv := retrytest.NewServer(nil,
		retrytest.RateLimited(90*time.Second, retrytest.GitHub),
		retrytest.RateLimited(1500*time.Millisecond, retrytest.Discord),
	).UseClock(clock)
	defer srv.Close()

	for range 2 {
		resp, err := http.Get(srv.URL)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		wait, ok := retryhttp.RateLimitWait(resp, clock.Now())
		fmt.Println(resp.Status, "remaining:", resp.Header.Get("X-RateLimit-Remaining"), "reset in:", wait, ok)
	}
	// Output:
	// 403 Forbidden remaining: 0 reset in: 1m30s true
	// 429 Too Many Requests remaining: 0 reset in: 1.5s true
}

// Test hedging in virtual time: the first request to arrive is held until
// the fake clock has moved a minute, the Transport waits its hedge delay
// on the same clock and sends a copy, which gets the fast answer and wins;
// the slow one is cancelled without ever being answered. (On the fake clock
// the hedge is sent at once in real time, so either copy may arrive first:
// the answer is the fast one either way.)
func ExampleAnswer_WithSlow() {
	clock := retrytest.NewClock(nil)
	srv := retrytest.NewServer(nil,
		retrytest.OK("slow").WithSlow(time.Minute),
		retrytest.OK("fast"),
	).UseClock(clock)
	defer srv.Close()

	var hedges []retryhttp.HedgeEvent
	client := &http.Client{Transport: &retryhttp.Transport{Policy: retryhttp.Policy{
		Clock:   clock,
		Hedge:   &retryhttp.Hedge{Delay: 200 * time.Millisecond},
		OnHedge: func(ev retryhttp.HedgeEvent) { hedges = append(hedges, ev) },
	}}}
	started := time.Now()
	resp, err := client.Get(srv.URL)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)

	fmt.Println(resp.Status, string(body))
	fmt.Println("requests:", srv.Count())
	fmt.Println("hedges:", len(hedges), "after", hedges[0].Delay)
	fmt.Println("virtual waits:", clock.Waits())
	fmt.Println("in real time under a second:", time.Since(started) < time.Second)
	// Output:
	// 200 OK fast
	// requests: 2
	// hedges: 1 after 200ms
	// virtual waits: [200ms]
	// in real time under a second: true
}
