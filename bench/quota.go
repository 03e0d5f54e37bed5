package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ---- A spent quota ----
//
// 30 concurrent GETs through one client (each library's defaults) to a
// GitHub-like API with a quota of 5 requests per window, whose window
// resets 3 s after it runs out. Every answer carries X-RateLimit-Limit: 5,
// X-RateLimit-Remaining and X-RateLimit-Reset (a Unix time in whole
// seconds), and a refusal is GitHub's 403. The contenders run at once, each
// against its own server.

const (
	quotaRequests = 30
	quotaLimit    = 5
	quotaReset    = 3 * time.Second
	quotaGiveUp   = time.Minute // a request still unanswered then is counted as failed
)

// quotaResult is one contender's run.
type quotaResult struct {
	lib       string
	sent      int           // requests the server received
	refusals  int           // of those, refused for the spent quota
	intoSpent int           // refused after the client had been told the quota was spent, in later windows
	successes int           // requests that ended 200 for the caller
	took      time.Duration // until the last request ended
	windows   []int         // arrivals per window
}

// githubQuota is the server: a quota per window, reset quotaReset after it
// runs out.
type githubQuota struct {
	mu       sync.Mutex
	used     int
	resetAt  time.Time
	windows  []int
	refused  []int
	sent     atomic.Int64
	refusals atomic.Int64
}

func (g *githubQuota) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	g.sent.Add(1)
	g.mu.Lock()
	now := time.Now()
	if len(g.windows) == 0 || (!g.resetAt.IsZero() && !now.Before(g.resetAt)) {
		g.used, g.resetAt = 0, time.Time{}
		g.windows, g.refused = append(g.windows, 0), append(g.refused, 0)
	}
	g.windows[len(g.windows)-1]++
	refused := g.used >= quotaLimit
	if refused {
		g.refused[len(g.refused)-1]++
	} else {
		g.used++
		if g.used == quotaLimit {
			g.resetAt = now.Add(quotaReset)
		}
	}
	remaining, resetAt := quotaLimit-g.used, g.resetAt
	g.mu.Unlock()
	if resetAt.IsZero() {
		resetAt = now.Add(quotaReset)
	}
	sec := resetAt.Unix()
	if resetAt.Nanosecond() > 0 {
		sec++
	}
	h := w.Header()
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	h.Set("X-RateLimit-Limit", strconv.Itoa(quotaLimit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Used", strconv.Itoa(quotaLimit-remaining))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(sec, 10))
	h.Set("X-RateLimit-Resource", "core")
	if refused {
		g.refusals.Add(1)
		h.Set("Content-Type", "application/json; charset=utf-8")
		w.WriteHeader(http.StatusForbidden)
		_, _ = io.WriteString(w, `{"message":"API rate limit exceeded"}`)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// quotaScenario runs every contender of libraries at once.
func quotaScenario() []quotaResult {
	results := make([]quotaResult, len(libraries))
	var wg sync.WaitGroup
	for i, lib := range libraries {
		wg.Go(func() { results[i] = quotaOne(lib) })
	}
	wg.Wait()
	return results
}

func quotaOne(lib library) quotaResult {
	g := &githubQuota{}
	srv := httptest.NewServer(g)
	defer srv.Close()
	base := newBase()
	defer base.CloseIdleConnections()
	client := &http.Client{Transport: lib.wrap(base)}
	ctx, cancel := context.WithTimeout(context.Background(), quotaGiveUp)
	defer cancel()
	var ok atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range quotaRequests {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	r := quotaResult{lib: lib.name, sent: int(g.sent.Load()), refusals: int(g.refusals.Load()),
		successes: int(ok.Load()), took: time.Since(start)}
	g.mu.Lock()
	r.windows = append(r.windows, g.windows...)
	for _, n := range g.refused[min(1, len(g.refused)):] {
		r.intoSpent += n
	}
	g.mu.Unlock()
	return r
}

func quotaMarkdown(rs []quotaResult) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("\n## A spent quota\n\n")
	p("%d concurrent GETs through one client with each library's defaults, to a GitHub-like API with a quota of %d per window and a reset %v after it runs out (X-RateLimit-Limit, -Remaining and -Reset on every answer, a 403 refusal). ",
		quotaRequests, quotaLimit, quotaReset)
	p("The first window's refusals are those of requests in flight when it ran out; \"into a spent quota\" counts the refusals of later windows, sent after a refusal had already said the quota was spent. A request still unanswered after %v is counted as failed.\n\n", quotaGiveUp)
	p("| contender | requests sent | refusals | into a spent quota | successes | time to finish | sent per window |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		ws := make([]string, len(r.windows))
		for i, n := range r.windows {
			ws[i] = strconv.Itoa(n)
		}
		p("| %s | %d | %d | %d | %d of %d | %.1f s | %s |\n", r.lib, r.sent, r.refusals, r.intoSpent, r.successes, quotaRequests, r.took.Seconds(), strings.Join(ws, ", "))
	}
	return b.String()
}
