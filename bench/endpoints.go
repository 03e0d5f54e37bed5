package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/b4dedce7/retryhttp"
)

// ---- One endpoint rate-limited ----
//
// The newcomer's "orders" service (issue 26): GET and POST /orders are not
// rate-limited; /search is, 5 requests per 3 s window, with
// X-RateLimit-Limit, -Remaining and -Reset (a Unix time in whole seconds)
// but no resource named, and a 429 refusal. Over endpointsFor, a client
// with a 10 s timeout sends a /search every endpointsSearchEvery, more than
// the quota allows, and endpointsOrders /orders calls (GET and POST in
// turn), each on its own goroutine, so that a held call delays no other.
// The contenders run at once, each against its own server: the bare
// transport; retryhttp with its defaults, whose hold of the spent /search
// quota is the destination's, and so holds /orders too; and retryhttp with
// a Policy.LimitKey that gives /search a key of its own.

const (
	endpointsOrders      = 80
	endpointsFor         = 12 * time.Second
	endpointsSearchEvery = 400 * time.Millisecond
	endpointsLimit       = 5
	endpointsWindow      = 3 * time.Second
	endpointsTimeout     = 10 * time.Second // the client's, as the newcomer's
)

// endpointsResult is one contender's run.
type endpointsResult struct {
	name          string
	orders        []time.Duration // each /orders call's time to its answer, or endpointsTimeout when it failed
	ordersFailed  int
	search        int // /search calls made
	searchOK      int // of those, answered 200
	searchRefused int // refusals the server sent to /search
}

// ordersService is the server.
type ordersService struct {
	mu      sync.Mutex
	used    int
	resetAt time.Time
	refused atomic.Int64
}

func (o *ordersService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	now := time.Now()
	h := w.Header()
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	if r.URL.Path != "/search" {
		time.Sleep(5 * time.Millisecond) // an order's own work
		_, _ = io.WriteString(w, `{"id":1}`)
		return
	}
	o.mu.Lock()
	if o.resetAt.IsZero() || !now.Before(o.resetAt) {
		o.used, o.resetAt = 0, now.Add(endpointsWindow)
	}
	refused := o.used >= endpointsLimit
	if !refused {
		o.used++
	}
	used, resetAt := o.used, o.resetAt
	o.mu.Unlock()
	sec := resetAt.Unix()
	if resetAt.Nanosecond() > 0 {
		sec++
	}
	h.Set("X-RateLimit-Limit", strconv.Itoa(endpointsLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(endpointsLimit-used))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(sec, 10))
	if refused {
		o.refused.Add(1)
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error":"rate limited"}`)
		return
	}
	_, _ = io.WriteString(w, `{"results":[]}`)
}

// searchLimitKey is the LimitKey the newcomer needs: /search has a limit of
// its own, and the rest share the destination's.
func searchLimitKey(r *http.Request) string {
	if r.URL.Path == "/search" {
		return "search"
	}
	return ""
}

// endpointsScenario runs the contenders at once.
func endpointsScenario() []endpointsResult {
	contenders := []struct {
		name string
		wrap func(http.RoundTripper) http.RoundTripper
	}{
		{"bare transport", func(b http.RoundTripper) http.RoundTripper { return b }},
		{"retryhttp", func(b http.RoundTripper) http.RoundTripper { return &retryhttp.Transport{Base: b} }},
		{"retryhttp with LimitKey", func(b http.RoundTripper) http.RoundTripper {
			return &retryhttp.Transport{Base: b, Policy: retryhttp.Policy{LimitKey: searchLimitKey}}
		}},
	}
	results := make([]endpointsResult, len(contenders))
	var wg sync.WaitGroup
	for i, c := range contenders {
		wg.Go(func() { results[i] = endpointsOne(c.name, c.wrap) })
	}
	wg.Wait()
	return results
}

func endpointsOne(name string, wrap func(http.RoundTripper) http.RoundTripper) endpointsResult {
	o := &ordersService{}
	srv := httptest.NewServer(o)
	defer srv.Close()
	base := newBase()
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: wrap(base), Timeout: endpointsTimeout}
	call := func(method, path string) (time.Duration, int) {
		var body io.Reader
		if method == http.MethodPost {
			body = strings.NewReader(`{"item":42}`)
		}
		req, _ := http.NewRequestWithContext(context.Background(), method, srv.URL+path, body)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return endpointsTimeout, 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Since(start), resp.StatusCode
	}

	r := endpointsResult{name: name, orders: make([]time.Duration, endpointsOrders)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := time.Now()
	searchTick := time.NewTicker(endpointsSearchEvery)
	orderTick := time.NewTicker(endpointsFor / endpointsOrders)
	defer searchTick.Stop()
	defer orderTick.Stop()
	for sent := 0; sent < endpointsOrders; {
		select {
		case <-searchTick.C:
			if time.Since(start) >= endpointsFor {
				continue
			}
			wg.Go(func() {
				_, status := call(http.MethodGet, "/search?q=widgets")
				mu.Lock()
				r.search++
				if status == http.StatusOK {
					r.searchOK++
				}
				mu.Unlock()
			})
		case <-orderTick.C:
			i := sent
			sent++
			wg.Go(func() {
				method, path := http.MethodGet, "/orders/"+strconv.Itoa(1000+i)
				if i%2 == 1 {
					method, path = http.MethodPost, "/orders"
				}
				took, status := call(method, path)
				mu.Lock()
				r.orders[i] = took
				if status != http.StatusOK {
					r.ordersFailed++
				}
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	r.searchRefused = int(o.refused.Load())
	return r
}

func endpointsMarkdown(rs []endpointsResult) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("\n## One endpoint rate-limited\n\n")
	p("An \"orders\" service whose /search allows %d requests per %v window (X-RateLimit-Limit, -Remaining and -Reset, no resource named; 429 beyond), and whose GET and POST /orders are not limited. Over %v a client with a %v timeout sends a /search every %v and %d /orders calls, each on its own goroutine. retryhttp's default hold of the spent /search quota is the destination's; with `LimitKey` separating /search, it holds /search only.\n\n",
		endpointsLimit, endpointsWindow, endpointsFor, endpointsTimeout, endpointsSearchEvery, endpointsOrders)
	p("| contender | /orders over 1 s | over 5 s | failed | slowest /orders | /search 200 of sent | /search refusals |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		over1, over5 := 0, 0
		for _, d := range r.orders {
			if d > time.Second {
				over1++
			}
			if d > 5*time.Second {
				over5++
			}
		}
		p("| %s | %d of %d | %d | %d | %.2f s | %d of %d | %d |\n", r.name, over1, len(r.orders), over5, r.ordersFailed,
			slices.Max(r.orders).Seconds(), r.searchOK, r.search, r.searchRefused)
	}
	return b.String()
}
