package retryhttp

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// waitForWaiters waits until the hold of u has n requests waiting on it.
// sendInBackground starts a GET of url with ctx through tr, and returns the
// channel that gets its error once it is answered (its body closed).
func sendInBackground(ctx context.Context, tr *Transport, url string) <-chan error {
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	return done
}

// postClosed sends a POST of url through tr and closes its body: a POST
// is never retried, so its answer reaches the hold as the server gave it.
func postClosed(t *testing.T, tr *Transport, url string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, nil)
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

func waitForWaiters(t *testing.T, tr *Transport, u *url.URL, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		h := tr.holds.hold(u, limitScope{})
		if h == nil {
			return false
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.waiters == n
	}, 5*time.Second, time.Millisecond)
}

// TestShedding503DoesNotSoftenASpentQuota: a 503 that names only its wait,
// answered while a quota is spent (by a 429, or by a remaining count of 0),
// is the answer to a request sent before; it does not make the quota load
// shedding, and a later success lets no held request into the spent quota
// before its reset.
func TestShedding503DoesNotSoftenASpentQuota(t *testing.T) {
	for _, tt := range []struct {
		name  string
		spend func(w http.ResponseWriter)
	}{
		{"429 with Retry-After", func(w http.ResponseWriter) {
			w.Header().Set("Retry-After", "10")
			w.WriteHeader(http.StatusTooManyRequests)
		}},
		{"X-RateLimit-Remaining: 0 with its reset", func(w http.ResponseWriter) {
			w.Header().Set("X-RateLimit-Remaining", "0")
			w.Header().Set("X-RateLimit-Reset-After", "10")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			release := map[string]chan struct{}{"/ok": make(chan struct{}), "/shed": make(chan struct{})}
			arrived := make(chan string, 4)
			// A test that fails before it releases the answers still ends:
			// stop releases them before the server is closed.
			stop := make(chan struct{})
			var held atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				switch r.URL.Path {
				case "/ok":
					arrived <- r.URL.Path
					select {
					case <-release[r.URL.Path]:
					case <-stop:
					}
				case "/shed":
					arrived <- r.URL.Path
					select {
					case <-release[r.URL.Path]:
					case <-stop:
					}
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusServiceUnavailable)
				case "/spend":
					tt.spend(w)
				case "/held":
					held.Add(1)
				}
			}))
			defer srv.Close()
			defer close(stop)
			// The quota's reset is played on a clock that only the test
			// moves: a request held for it stays held until then.
			clock := newStepClock(t)
			tr := &Transport{Policy: Policy{Budget: UnlimitedBudget(), Clock: clock}}
			defer tr.CloseIdleConnections()
			u, err := url.Parse(srv.URL)
			require.NoError(t, err)

			// Two POSTs in flight, so that the 503 is not retried.
			var inflight sync.WaitGroup
			answered := map[string]chan struct{}{"/ok": make(chan struct{}), "/shed": make(chan struct{})}
			for _, path := range []string{"/ok", "/shed"} {
				inflight.Go(func() {
					defer close(answered[path])
					req, _ := http.NewRequest(http.MethodPost, srv.URL+path, nil)
					resp, err := tr.RoundTrip(req)
					if assert.NoError(t, err) {
						resp.Body.Close()
					}
				})
				<-arrived
			}
			// The quota is spent for 10 s.
			reset := clock.Now().Add(10 * time.Second)
			postClosed(t, tr, srv.URL+"/spend")
			// The 503 of a request sent before comes back.
			close(release["/shed"])
			<-answered["/shed"]

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			heldDone := sendInBackground(ctx, tr, srv.URL+"/held")
			waitForWaiters(t, tr, u, 1)
			require.Eventually(t, func() bool { return len(clock.sleeping()) == 1 }, 5*time.Second, time.Millisecond,
				"the held request waits on the clock for the reset")
			close(release["/ok"])
			<-answered["/ok"]
			// The success has come back; the clock moves to the last moment
			// before the reset. A request let go by either would be sent
			// at once, and one still held waits on the clock: whichever
			// comes first tells.
			clock.advance(reset.Sub(clock.Now()) - time.Nanosecond)
			require.Eventually(t, func() bool { return held.Load() > 0 || len(clock.sleeping()) == 1 }, 5*time.Second, time.Millisecond)
			assert.Zero(t, held.Load(), "nothing is sent into a spent quota before its reset")
			cancel()
			assert.ErrorIs(t, <-heldDone, context.Canceled)
			inflight.Wait()
		})
	}
}

// virtualClock is a Clock that moves forward at once by each wait, or when
// the test advances it, as retrytest.Clock does (which this package's own
// tests cannot import).
type virtualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *virtualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *virtualClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.advance(max(d, 0))
	return nil
}

func (c *virtualClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (*virtualClock) Virtual() bool { return true }

// TestQuotaHoldExpiresUnderOverlappingTraffic: a hold whose reset has long
// passed is forgotten even though a request it let through is always in
// flight, and the answers of those requests, which carry no news, do not
// bring it back.
func TestQuotaHoldExpiresUnderOverlappingTraffic(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/spend":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
		case "/slow":
			arrived <- struct{}{}
			<-release
		}
	}))
	defer srv.Close()
	clock := &virtualClock{now: time.Now()}
	tr := &Transport{Policy: Policy{Clock: clock, MaxAttempts: 1, Budget: UnlimitedBudget()}}
	defer tr.CloseIdleConnections()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)

	require.Equal(t, http.StatusTooManyRequests, postClosed(t, tr, srv.URL+"/spend").StatusCode)
	require.NoError(t, <-sendInBackground(context.Background(), tr, srv.URL+"/fast"), "held until the reset, then sent")
	require.NotNil(t, tr.holds.find(u), "the hold is kept a while past its reset")

	// Steady traffic: a new request is sent before the one in flight is
	// answered, every 10 minutes for an hour.
	done := make(chan error, 16)
	send := func() {
		go func() { done <- <-sendInBackground(context.Background(), tr, srv.URL+"/slow") }()
		<-arrived
	}
	send()
	for range 6 {
		clock.advance(10 * time.Minute)
		send()
		release <- struct{}{}
		require.NoError(t, <-done)
	}
	assert.Nil(t, tr.holds.find(u), "an hour after a 1 s reset, the hold still holds")

	release <- struct{}{}
	require.NoError(t, <-done)
	assert.Nil(t, tr.holds.find(u), "the answer of a request the dead hold let through brought it back")
}

// requireHoldTablesAgree checks that hs's two tables agree: every place
// has as many holds in the table as it counts, at least one, and every
// hold is found under its destination and scope, with its place.
func requireHoldTablesAgree(t *testing.T, hs *holds) {
	t.Helper()
	require.LessOrEqual(t, hs.table.len(), maxHolds)
	counted := 0
	for p := range hs.places.all() {
		if p.count < 1 || hs.find(p.dest) != p {
			t.Fatalf("the place of %v counts %d holds, and is found: %v", p.dest, p.count, hs.find(p.dest) == p)
		}
		counted += p.count
	}
	require.Equal(t, hs.table.len(), counted, "the holds the places count")
	for h := range hs.table.all() {
		if h.place == nil || hs.find(h.place.dest) != h.place || hs.hold(h.place.dest, h.scope) != h {
			t.Fatalf("hold %v of %v is not found under its place", h.scope, h.place)
		}
		h.mu.Lock()
		gone := h.gone
		h.mu.Unlock()
		if gone {
			t.Fatalf("hold %v of %v is retired but in the table", h.scope, h.place.dest)
		}
	}
}

// TestHoldTablesAgreeThroughEvictionAndExpiry: whatever holds are added,
// evicted or expire, a destination has a place exactly while it has a
// hold, so that its requests take the happy path again with its last.
func TestHoldTablesAgreeThroughEvictionAndExpiry(t *testing.T) {
	t.Parallel() // CPU-bound: it runs beside the other parallel tests, on another core
	var hs holds
	rnd := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	scopes := []limitScope{{}, {scopeResource, "core"}, {scopeResource, "search"}, {scopeKey, "core"}, {scopeKey, "a"}}
	var added []*hold
	most := 0
	for i := range 1500 {
		u := mustURL(t, fmt.Sprintf("https://host%d.example", rnd.IntN(1000)))
		s := scopes[rnd.IntN(len(scopes))]
		h := hs.findOrAddIn(u, s)
		require.Same(t, h, hs.hold(u, s))
		require.NotNil(t, hs.find(u))
		h.mu.Lock()
		h.spend(now, time.Duration(1+rnd.IntN(600))*time.Second, "Retry-After", 0)
		h.mu.Unlock()
		added = append(added, h)
		if i%10 == 9 {
			now = now.Add(5 * time.Second)
			for range 5 {
				hs.dropIfExpired(added[rnd.IntN(len(added))], now)
			}
		}
		if i%250 == 249 {
			requireHoldTablesAgree(t, &hs)
		}
		most = max(most, hs.table.len())
	}
	require.Equal(t, maxHolds, most, "holds were evicted at the bound")

	// Long after every reset, each hold expires as it is dropped, and its
	// destination is forgotten with its last.
	now = now.Add(time.Hour)
	for h := range hs.table.all() {
		hs.dropIfExpired(h, now)
	}
	requireHoldTablesAgree(t, &hs)
	assert.Zero(t, hs.table.len())
	assert.Zero(t, hs.places.len())
	assert.Nil(t, hs.find(mustURL(t, "https://host1.example")))
}

// TestHoldsLeaveWithAPlaceWhoseSlotIsTaken: when a destination's place
// is evicted because another destination's hash takes its slot, the holds
// of the first leave with it, retired, rather than stay where no request
// finds them, and the tables agree.
func TestHoldsLeaveWithAPlaceWhoseSlotIsTaken(t *testing.T) {
	var hs holds
	a, b := mustURL(t, "https://a.example"), mustURL(t, "https://b.example")
	ha := hs.findOrAdd(a)
	hs2 := hs.findOrAddIn(a, limitScope{scopeResource, "search"})
	hs.findOrAdd(mustURL(t, "https://c.example"))

	// Make a's place sit at b's hash, as if their hashes collided.
	hs.mu.Lock()
	hs.places.mu.Lock()
	next := maps.Clone(*hs.places.m.Load())
	ka, kb := hs.places.hash(a, ""), hs.places.hash(b, "")
	next[kb] = next[ka]
	next[kb].key = kb
	delete(next, ka)
	hs.places.m.Store(&next)
	hs.places.mu.Unlock()
	hs.mu.Unlock()

	hb := hs.findOrAdd(b)
	assert.NotSame(t, ha, hb)
	for _, h := range []*hold{ha, hs2} {
		h.mu.Lock()
		assert.True(t, h.gone, "a's hold is retired")
		h.mu.Unlock()
	}
	assert.Nil(t, hs.hold(a, limitScope{}))
	assert.Nil(t, hs.hold(a, limitScope{scopeResource, "search"}))
	assert.Equal(t, 2, hs.table.len(), "b's hold and c's")
	requireHoldTablesAgree(t, &hs)
}
