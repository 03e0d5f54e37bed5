package retryhttp_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/b4dedce7/retryhttp"
	"github.com/b4dedce7/retryhttp/retrytest"
)

// limitedAPI plays an API whose limits are drawn per resource, on a fake
// clock: each resource has a quota of limit requests per fixed window, and
// resourceOf says which resource a request draws on ("" for none: such a
// request is never refused and its answer carries no rate-limit fields).
// Every answer of a limited resource carries X-RateLimit-Limit, -Remaining,
// -Used and -Reset (a Unix time in whole seconds, against Date), and, when
// named is set, X-RateLimit-Resource, as GitHub's answers do. A refusal is
// status (403 as GitHub's, 429 as most others').
type limitedAPI struct {
	clock      *retrytest.Clock
	limits     map[string]apiLimit
	resourceOf func(*http.Request) string
	named      bool
	status     int

	mu       sync.Mutex
	windows  map[string]*apiWindow
	refused  map[string]int // per path
	arrivals int
}

type apiLimit struct {
	limit  int
	window time.Duration
}

type apiWindow struct {
	used    int
	resetAt time.Time
}

func newLimitedAPI(t *testing.T, api *limitedAPI) *httptest.Server {
	api.windows, api.refused = map[string]*apiWindow{}, map[string]int{}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

func (a *limitedAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	now := a.clock.Now()
	h := w.Header()
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	res := a.resourceOf(r)
	a.mu.Lock()
	a.arrivals++
	if res == "" {
		a.mu.Unlock()
		_, _ = io.WriteString(w, "ok")
		return
	}
	lim := a.limits[res]
	win := a.windows[res]
	if win == nil || !now.Before(win.resetAt) {
		win = &apiWindow{resetAt: now.Add(lim.window)}
		a.windows[res] = win
	}
	refused := win.used >= lim.limit
	if refused {
		a.refused[r.URL.Path]++
	} else {
		win.used++
	}
	used, resetAt := win.used, win.resetAt
	a.mu.Unlock()
	sec := resetAt.Unix()
	if resetAt.Nanosecond() > 0 {
		sec++
	}
	h.Set("X-RateLimit-Limit", strconv.Itoa(lim.limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(lim.limit-used))
	h.Set("X-RateLimit-Used", strconv.Itoa(used))
	h.Set("X-RateLimit-Reset", strconv.FormatInt(sec, 10))
	if a.named {
		h.Set("X-RateLimit-Resource", res)
	}
	if refused {
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, `{"message":"API rate limit exceeded"}`)
		return
	}
	_, _ = io.WriteString(w, "ok")
}

func (a *limitedAPI) refusals(path string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.refused[path]
}

// holdLog records the OnHold events of a Transport.
type holdLog struct {
	mu     sync.Mutex
	events []retryhttp.HoldEvent
}

func (l *holdLog) record(ev retryhttp.HoldEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

// take returns the events recorded since the last take.
func (l *holdLog) take() []retryhttp.HoldEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := l.events
	l.events = nil
	return ev
}

// sendOK sends method url through client, checks that it is answered 200,
// and returns how long it waited on the fake clock (holds and retries).
func sendOK(t *testing.T, client *http.Client, clock *retrytest.Clock, method, url string) time.Duration {
	t.Helper()
	before := clock.Waited()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"item":1}`)
	}
	resp, _, err := do(t, client, newRequest(t, method, url, body))
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s", method, url)
	return clock.Waited() - before
}

// gitHubLike is a GitHub-like API: the search endpoints draw on "search",
// 5 requests per 3 s window; everything else on "core", 5,000 an hour.
func gitHubLike(t *testing.T, clock *retrytest.Clock) (*limitedAPI, *httptest.Server) {
	api := &limitedAPI{
		clock: clock,
		limits: map[string]apiLimit{
			"core":   {5000, time.Hour},
			"search": {5, 3 * time.Second},
		},
		resourceOf: func(r *http.Request) string {
			if strings.HasPrefix(r.URL.Path, "/search/") {
				return "search"
			}
			return "core"
		},
		named:  true,
		status: http.StatusForbidden,
	}
	return api, newLimitedAPI(t, api)
}

// TestSpentResourceHoldsOnlyItsRequests: an API that names the resource each
// answer draws on (GitHub's X-RateLimit-Resource) has its spent "search"
// quota hold the search requests until its reset, and no request to "core":
// those are sent at once, with no hold and no wait.
func TestSpentResourceHoldsOnlyItsRequests(t *testing.T) {
	var holds holdLog
	client, clock := newClient(t, retryhttp.Policy{OnHold: holds.record})
	api, srv := gitHubLike(t, clock)

	for i := range 5 {
		assert.Zero(t, sendOK(t, client, clock, "GET", srv.URL+"/search/issues?q=bug+"+strconv.Itoa(i)))
	}
	require.Empty(t, holds.take(), "the search quota is spent by its fifth request, not before")

	core := func() {
		t.Helper()
		for i := range 10 {
			assert.Zero(t, sendOK(t, client, clock, "GET", fmt.Sprintf("%s/repos/octo/hello/issues/%d", srv.URL, i+1)),
				"a core request waits nothing")
			assert.Zero(t, sendOK(t, client, clock, "POST", srv.URL+"/repos/octo/hello/issues"))
			assert.Zero(t, sendOK(t, client, clock, "GET", srv.URL+"/user"))
		}
		assert.Empty(t, holds.take(), "no core request is held")
	}
	core()

	// A search request is held until the reset, 3 s after the window
	// opened (a second more for X-RateLimit-Reset's whole seconds), and
	// nothing is sent into the spent quota.
	waited := sendOK(t, client, clock, "GET", srv.URL+"/search/issues?q=held")
	assert.GreaterOrEqual(t, waited, 2*time.Second)
	if ev := holds.take(); assert.Len(t, ev, 1) {
		assert.Equal(t, "/search/issues", ev[0].Request.URL.Path)
		assert.Equal(t, retryhttp.HoldReset, ev[0].Reason)
		assert.Equal(t, "X-RateLimit-Reset", ev[0].Header)
		assert.NoError(t, ev[0].Err)
	}
	assert.Zero(t, api.refusals("/search/issues"), "nothing sent into the spent search quota")

	// Spent again; core is still not held.
	for range 4 {
		sendOK(t, client, clock, "GET", srv.URL+"/search/issues?q=more")
	}
	holds.take()
	core()
}

// TestUnseenRouteIsNotHeldByASpentResource: a request whose route has never
// been answered as drawing on the spent resource is sent; its answer
// teaches the Transport that its route draws on it, and the next request
// of that route is held.
func TestUnseenRouteIsNotHeldByASpentResource(t *testing.T) {
	var holds holdLog
	client, clock := newClient(t, retryhttp.Policy{OnHold: holds.record})
	api, srv := gitHubLike(t, clock)
	for range 5 {
		sendOK(t, client, clock, "GET", srv.URL+"/search/issues?q=x")
	}

	req := newRequest(t, "GET", srv.URL+"/search/commits?q=x", nil)
	resp, _, err := do(t, client, req.WithContext(retryhttp.NoRetry(req.Context())))
	require.NoError(t, err)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "sent into the spent quota: nothing said it draws on it")
	assert.Empty(t, holds.take())
	assert.Zero(t, clock.Waited())

	assert.Positive(t, sendOK(t, client, clock, "GET", srv.URL+"/search/commits?q=y"), "its route is known now")
	assert.Len(t, holds.take(), 1)
	assert.Equal(t, 1, api.refusals("/search/commits"))
}

// ordersAPI is the newcomer's "orders" service: GET and POST /orders are not
// rate-limited; /search is, 5 requests per 3 s window, with
// X-RateLimit-Limit, -Remaining and -Reset but no resource named.
func ordersAPI(t *testing.T, clock *retrytest.Clock) (*limitedAPI, *httptest.Server) {
	api := &limitedAPI{
		clock:  clock,
		limits: map[string]apiLimit{"search": {5, 3 * time.Second}},
		resourceOf: func(r *http.Request) string {
			if r.URL.Path == "/search" {
				return "search"
			}
			return ""
		},
		status: http.StatusTooManyRequests,
	}
	return api, newLimitedAPI(t, api)
}

// searchKey is the newcomer's LimitKey: /search has a limit of its own.
func searchKey(r *http.Request) string {
	if r.URL.Path == "/search" {
		return "search"
	}
	return ""
}

// TestLimitKeyScopesHoldsOfARouteOnlyAPI: an API that names no resource
// holds every request of its destination once /search has spent its quota,
// as it always did; with a LimitKey that gives /search a key of its own,
// only /search is held, and the /orders calls are sent at once.
func TestLimitKeyScopesHoldsOfARouteOnlyAPI(t *testing.T) {
	for _, tt := range []struct {
		name        string
		limitKey    func(*http.Request) string
		ordersHeld  bool
		searchAfter bool // a /search is held after the /orders calls
	}{
		{"LimitKey separates /search", searchKey, false, true},
		{"without LimitKey the destination is held", nil, true, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var holds holdLog
			client, clock := newClient(t, retryhttp.Policy{OnHold: holds.record, LimitKey: tt.limitKey})
			api, srv := ordersAPI(t, clock)
			for i := range 5 {
				sendOK(t, client, clock, "GET", srv.URL+"/search?q="+strconv.Itoa(i))
			}
			require.Empty(t, holds.take())
			require.Zero(t, clock.Waited())

			var waited time.Duration
			for i := range 10 {
				waited += sendOK(t, client, clock, "GET", fmt.Sprintf("%s/orders/%d", srv.URL, 1000+i))
				waited += sendOK(t, client, clock, "POST", srv.URL+"/orders")
			}
			if tt.ordersHeld {
				// Held until /search's reset, and then again whenever the
				// /orders calls have used up the quota /search announced.
				assert.GreaterOrEqual(t, waited, 2*time.Second, "the /orders calls wait for /search's reset")
				if ev := holds.take(); assert.NotEmpty(t, ev) {
					assert.Equal(t, "/orders/1000", ev[0].Request.URL.Path, "the first /orders call is held")
				}
			} else {
				assert.Zero(t, waited, "no /orders call waits")
				assert.Empty(t, holds.take(), "no /orders call is held")
			}

			if tt.searchAfter {
				assert.GreaterOrEqual(t, sendOK(t, client, clock, "GET", srv.URL+"/search?q=held"), 2*time.Second)
				if ev := holds.take(); assert.Len(t, ev, 1) {
					assert.Equal(t, "/search", ev[0].Request.URL.Path)
				}
			}
			assert.Zero(t, api.refusals("/search"), "nothing sent into the spent quota")
		})
	}
}

// TestLimitKeyIsCalledOnlyForADestinationUnderAHold: the happy path does
// not pay for LimitKey; once a destination has a hold, its requests and
// answers are keyed.
func TestLimitKeyIsCalledOnlyForADestinationUnderAHold(t *testing.T) {
	var calls atomic.Int32
	client, clock := newClient(t, retryhttp.Policy{LimitKey: func(r *http.Request) string {
		calls.Add(1)
		return searchKey(r)
	}})
	_, srv := ordersAPI(t, clock)
	for range 4 {
		sendOK(t, client, clock, "GET", srv.URL+"/orders/1")
		sendOK(t, client, clock, "GET", srv.URL+"/search")
	}
	assert.Zero(t, calls.Load(), "no hold, no key")
	sendOK(t, client, clock, "GET", srv.URL+"/search") // spends the quota
	sendOK(t, client, clock, "GET", srv.URL+"/orders/1")
	assert.Positive(t, calls.Load())
}
