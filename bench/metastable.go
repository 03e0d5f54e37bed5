package main

import (
	"context"
	"fmt"
	"github.com/cenkalti/backoff/v4"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/hashicorp/go-retryablehttp"

	"github.com/b4dedce7/retryhttp"
)

// ---- 7. Metastable failure ----
//
// The server is one worker in front of a FIFO queue: it serves capacity
// requests a second (each takes 1/capacity of work), a tenth of that while
// the trigger lasts, and holds at most queueSeconds × capacity requests
// waiting; an arrival that finds the queue full is answered 503 at once (no
// Retry-After), which costs it nothing. A request's wait grows with the
// queue. The worker never looks at whether the client is still there: a
// request whose client gave up (its 1 s per-attempt limit passed) is still
// served in its turn, and that work is wasted. That is the sustaining effect:
// a queue longer than the clients' limit makes every answer late, and retries
// of those late answers keep the queue long.
//
// Requests arrive open-loop, as a Poisson process at load × capacity a
// second, each to one of the clients picked at random, from one arrival
// schedule shared by every contender. Each client is one simulated process
// with its own transport and its library's setup for a 1 s limit per
// attempt.

// metaParams are the parameters of one run of the scenario.
type metaParams struct {
	capacity      float64       // requests a second the server serves
	load          float64       // offered load, a fraction of capacity
	queueSeconds  float64       // the queue holds this many seconds of work
	triggerFactor float64       // capacity is multiplied by this during the trigger
	clients       int           // clients, each its own process
	limit         time.Duration // per-attempt limit of every client
	warmup        time.Duration // before the trigger
	trigger       time.Duration // how long the trigger lasts
	after         time.Duration // after the trigger, until the end of the offered load
	grace         time.Duration // how long in-flight requests may finish after that
	seed          uint64
	// retryAfter, if not 0, is the Retry-After (whole seconds) the server
	// sends on its full queue's 503s; 0 sends none.
	retryAfter int
	// warmupRate, if not 0, is the rate (requests a second, in all) of the
	// arrivals before the trigger, instead of load × capacity: a young
	// fleet's processes have sent little, and earned little, by then.
	warmupRate float64
}

func (p metaParams) queueLimit() int { return int(math.Round(p.queueSeconds * p.capacity)) }
func (p metaParams) runFor() time.Duration {
	return p.warmup + p.trigger + p.after
}

// metaFullParams are the parameters of the full run; -quick shortens the
// phases.
func metaFullParams() metaParams {
	return metaParams{
		capacity: 300, load: 0.9, queueSeconds: 1.5, triggerFactor: 0.1, clients: 20,
		limit: time.Second, warmup: 20 * time.Second, trigger: 10 * time.Second, after: 30 * time.Second,
		grace: 3 * time.Second, seed: 1,
	}
}

// The resolution of the counts and the window of the recovery rule.
const (
	metaTick         = 100 * time.Millisecond
	metaWindow       = time.Second
	metaRecoverShare = 0.95
)

type metaResult struct {
	lib      string
	setup    string // how the 1 s limit per attempt was configured
	params   metaParams
	offered  []int // requests offered, by arrival tick
	load     []int // attempts the server received, by arrival tick
	goodput  []int // successful answers, by completion tick
	requests int
	ok       int
	attempts int
	served   int // requests the worker served, wasted or not
	wasted   int // of those, served after their client had gone
	// Measured from the end of the trigger: when goodput was back to at
	// least 95% of the offered load for good, or recovered false.
	recovered bool
	recovery  time.Duration
	// retries made from the start of the trigger to the end of the run, and
	// the highest ratio of load to the bare transport's over 1 s windows
	// in that span.
	retriesFromTrigger int
	maxLoadRatio       float64
	// the attempts the server received from the start of the trigger to
	// the end of the offered load, against the requests offered (the bare
	// transport's load); and the successes from the end of the trigger to
	// the end of the offered load, against the requests offered in it
	meanLoadRatio float64
	goodputAfter  float64
}

// metaServer is the server of the scenario.
type metaServer struct {
	*httptest.Server
	p      metaParams
	start  time.Time
	queue  chan *metaItem
	load   []atomic.Int64
	served atomic.Int64
	wasted atomic.Int64
	stop   chan struct{}
	done   chan struct{}
}

type metaItem struct {
	at   time.Time
	done chan struct{}
}

func newMetaServer(p metaParams, start time.Time) *metaServer {
	s := &metaServer{
		p: p, start: start,
		queue: make(chan *metaItem, p.queueLimit()),
		load:  make([]atomic.Int64, ticks(p.runFor()+p.grace)+1),
		stop:  make(chan struct{}), done: make(chan struct{}),
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	go s.work()
	return s
}

func ticks(d time.Duration) int { return int(d / metaTick) }

func (s *metaServer) tick(t time.Time) int {
	return min(max(0, ticks(t.Sub(s.start))), len(s.load)-1)
}

func (s *metaServer) handle(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	s.load[s.tick(now)].Add(1)
	item := &metaItem{at: now, done: make(chan struct{})}
	select {
	case s.queue <- item:
	default:
		// Queue full: refused at once, at no cost, with the wait the
		// scenario names, if any.
		if s.p.retryAfter > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(s.p.retryAfter))
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	select {
	case <-item.done:
	case <-s.stop:
		return
	}
	if r.Context().Err() != nil {
		s.wasted.Add(1) // nobody is waiting for this answer any more
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// work serves the queue in order. Each request starts when the previous one
// is done or when it arrived, whichever is later, and takes 1/capacity (or
// 1/(capacity × triggerFactor) if it starts during the trigger), so that
// the worker serves exactly its capacity however late the operating system
// wakes it.
func (s *metaServer) work() {
	defer close(s.done)
	trigStart := s.start.Add(s.p.warmup)
	trigEnd := trigStart.Add(s.p.trigger)
	var free time.Time
	for {
		var item *metaItem
		select {
		case item = <-s.queue:
		case <-s.stop:
			return
		}
		begin := free
		if item.at.After(begin) {
			begin = item.at
		}
		rate := s.p.capacity
		if !begin.Before(trigStart) && begin.Before(trigEnd) {
			rate *= s.p.triggerFactor
		}
		free = begin.Add(time.Duration(float64(time.Second) / rate))
		if d := time.Until(free); d > 0 {
			select {
			case <-time.After(d):
			case <-s.stop:
				return
			}
		}
		s.served.Add(1)
		close(item.done)
	}
}

func (s *metaServer) shutdown() {
	close(s.stop)
	<-s.done
	s.Server.CloseClientConnections()
	s.Server.Close()
}

// metaClient is one contender's client in one simulated process.
type metaClient struct {
	do        func(ctx context.Context, url string) bool // reports success (200)
	closeIdle func()
}

// metaClientFor returns a new client of the contender lib with its
// recommended setup for a per-attempt limit, and a description of it.
func metaClientFor(lib string, limit time.Duration, nativeTimeout bool) (metaClient, string) {
	base := newBase()
	var c *http.Client
	var setup string
	switch lib {
	case "bare transport":
		c = &http.Client{Transport: base, Timeout: limit}
		setup = fmt.Sprintf("http.Client.Timeout = %v", limit)
	case "retryhttp":
		pol := retryhttp.Policy{AttemptTimeout: limit}
		var rt http.RoundTripper = base
		setup = fmt.Sprintf("Policy.AttemptTimeout = %v, other fields default", limit)
		if !nativeTimeout {
			// The core does not enforce AttemptTimeout yet: the bench
			// applies the limit to each attempt below the Transport, with
			// an error the Transport retries like a broken connection.
			pol.AttemptTimeout = 0
			rt = attemptLimit{base: base, limit: limit}
			setup = fmt.Sprintf("**AttemptTimeout emulated by the bench** (%v per attempt, error retried), other fields default", limit)
		}
		c = &http.Client{Transport: &retryhttp.Transport{Base: rt, Policy: pol}}
	case "go-retryablehttp":
		rc := retryablehttp.NewClient()
		rc.HTTPClient.Transport = base
		rc.HTTPClient.Timeout = limit
		rc.Logger = nil
		c = &http.Client{Transport: &retryablehttp.RoundTripper{Client: rc}}
		setup = fmt.Sprintf("HTTPClient.Timeout = %v, other fields default", limit)
	case "failsafehttp":
		c = &http.Client{Transport: failsafehttp.NewRoundTripper(base,
			failsafehttp.NewRetryPolicyBuilder().Build(), timeout.New[*http.Response](limit))}
		setup = fmt.Sprintf("default retry policy around timeout.New(%v)", limit)
	case "retryhttp hedged, adaptive", "retryhttp hedged, fixed":
		c, setup = metaHedgedClient(lib, base, limit)
	case "resty":
		c = &http.Client{Transport: restyWithTimeout(base, limit)}
		setup = fmt.Sprintf("SetRetryCount(%d), 429 and 5xx retry conditions, SetTimeout(%v) (per attempt)", restyRetries, limit)
	default:
		mk, ok := extraMetaClients[lib]
		if !ok {
			panic("unknown contender " + lib)
		}
		c, setup = mk(base, limit)
	}
	do := func(ctx context.Context, url string) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	return metaClient{do: do, closeIdle: base.CloseIdleConnections}, setup
}

// attemptLimit bounds each attempt through it to limit, and turns an attempt
// that ran out of time into an error wrapping ECONNRESET, so that
// retryhttp retries it. It stands in for Policy.AttemptTimeout while the
// core does not enforce it.
type attemptLimit struct {
	base  http.RoundTripper
	limit time.Duration
}

func (a attemptLimit) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithTimeout(req.Context(), a.limit)
	resp, err := a.base.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		if req.Context().Err() == nil && ctx.Err() != nil {
			return nil, fmt.Errorf("attempt timed out after %v: %w", a.limit, syscall.ECONNRESET)
		}
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}

// attemptTimeoutEnforced reports whether retryhttp's core enforces
// Policy.AttemptTimeout and retries an attempt that runs out of it.
func attemptTimeoutEnforced() bool {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := newBase()
	defer base.CloseIdleConnections()
	// A short constant backoff: the default's 1 s ±50% would make the
	// probe's bound of 1.5 s fail on its own four times in ten.
	t := &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{
		AttemptTimeout: 100 * time.Millisecond,
		Backoff:        func() backoff.BackOff { return backoff.NewConstantBackOff(10 * time.Millisecond) },
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	start := time.Now()
	resp, err := t.RoundTrip(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && n.Load() == 2 && time.Since(start) < 1500*time.Millisecond
}

// metastable runs the scenario for every contender, one after another in the
// full run, all at once (each with its own server) in the quick one.
func metastable(p metaParams, concurrent bool, libraries []library) ([]metaResult, bool) {
	native := attemptTimeoutEnforced()
	sched := metaSchedule(p)
	results := make([]metaResult, len(libraries))
	if concurrent {
		var wg sync.WaitGroup
		for i, lib := range libraries {
			wg.Go(func() { results[i] = metastableOne(p, lib.name, sched, native) })
		}
		wg.Wait()
	} else {
		for i, lib := range libraries {
			results[i] = metastableOne(p, lib.name, sched, native)
		}
	}
	// Against the requests offered, which is the bare transport's load by
	// definition (one attempt each): its measured load can stall on
	// loopback (see RESULTS.md), which would make any ratio to it noise.
	for i := range results {
		r := &results[i]
		r.maxLoadRatio = maxWindowRatio(r.load, r.offered, ticks(p.warmup), ticks(p.runFor()))
		r.meanLoadRatio = spanRatio(r.load, r.offered, ticks(p.warmup), ticks(p.runFor()))
		r.goodputAfter = spanRatio(r.goodput, r.offered, ticks(p.warmup+p.trigger), ticks(p.runFor()))
	}
	return results, native
}

type metaArrival struct {
	at     time.Duration
	client int
}

// metaSchedule draws the Poisson arrivals of a run, each to a client: at
// p.warmupRate before the trigger, if it is set, and at load × capacity
// from then on.
func metaSchedule(p metaParams) []metaArrival {
	rng := rand.New(rand.NewPCG(p.seed, 0x5eed))
	rate := p.load * p.capacity
	warm := rate
	if p.warmupRate > 0 {
		warm = p.warmupRate
	}
	var out []metaArrival
	for t := 0.0; ; {
		r := rate
		if t < p.warmup.Seconds() {
			r = warm
		}
		t += rng.ExpFloat64() / r
		if r != rate && t >= p.warmup.Seconds() {
			// The gap drawn at the warm-up's rate crossed into the
			// trigger: memorylessness lets it restart there at the
			// trigger's rate.
			t = p.warmup.Seconds() + rng.ExpFloat64()/rate
		}
		at := time.Duration(t * float64(time.Second))
		if at >= p.runFor() {
			return out
		}
		out = append(out, metaArrival{at: at, client: rng.IntN(p.clients)})
	}
}

func metastableOne(p metaParams, lib string, sched []metaArrival, native bool) metaResult {
	clients := make([]metaClient, p.clients)
	var setup string
	for i := range clients {
		clients[i], setup = metaClientFor(lib, p.limit, native)
	}
	start := time.Now().Add(50 * time.Millisecond)
	srv := newMetaServer(p, start)
	n := ticks(p.runFor()+p.grace) + 1
	goodput := make([]atomic.Int64, n)
	offered := make([]int, n)
	ctx, cancel := context.WithCancel(context.Background())
	var ok atomic.Int64
	var wg sync.WaitGroup
	for _, a := range sched {
		offered[ticks(a.at)]++
		time.Sleep(time.Until(start.Add(a.at)))
		wg.Go(func() {
			if clients[a.client].do(ctx, srv.URL) {
				ok.Add(1)
				goodput[min(n-1, ticks(time.Since(start)))].Add(1)
			}
		})
	}
	time.Sleep(time.Until(start.Add(p.runFor() + p.grace)))
	cancel()
	wg.Wait()
	srv.shutdown()
	for _, c := range clients {
		c.closeIdle()
	}

	r := metaResult{lib: lib, setup: setup, params: p, requests: len(sched), ok: int(ok.Load()),
		served: int(srv.served.Load()), wasted: int(srv.wasted.Load()), offered: offered}
	r.load = make([]int, n)
	r.goodput = make([]int, n)
	for i := range n {
		r.load[i] = int(srv.load[i].Load())
		r.goodput[i] = int(goodput[i].Load())
		r.attempts += r.load[i]
	}
	from, to := ticks(p.warmup), ticks(p.runFor())
	for i := from; i < to; i++ {
		r.retriesFromTrigger += r.load[i] - offered[i]
	}
	r.recovered, r.recovery = recoveryTime(offered, r.goodput, ticks(p.warmup+p.trigger), ticks(p.runFor()))
	return r
}

// recoveryTime finds the first tick t from `from` on such that goodput in
// the window of metaWindow from t, and goodput from t to `to`, are each at
// least metaRecoverShare of the requests offered in the same span, and
// returns its distance from `from`. The second condition keeps a brief
// spike from counting as a recovery, without letting the noise of a queue
// at 90% load in a single later window undo one.
func recoveryTime(offered, goodput []int, from, to int) (bool, time.Duration) {
	w := int(metaWindow / metaTick)
	sum := func(xs []int, i, j int) float64 {
		s := 0
		for _, x := range xs[i:j] {
			s += x
		}
		return float64(s)
	}
	for t := from; t+w <= to; t++ {
		if sum(goodput, t, t+w) >= metaRecoverShare*sum(offered, t, t+w) &&
			sum(goodput, t, to) >= metaRecoverShare*sum(offered, t, to) {
			return true, time.Duration(t-from) * metaTick
		}
	}
	return false, 0
}

// maxWindowRatio is the highest ratio of a's sum to b's over the windows of
// metaWindow within [from, to).
func maxWindowRatio(a, b []int, from, to int) float64 {
	w := int(metaWindow / metaTick)
	best := 0.0
	for i := from; i+w <= to; i += w {
		sa, sb := 0, 0
		for j := i; j < i+w; j++ {
			sa += a[j]
			sb += b[j]
		}
		if sb > 0 {
			best = math.Max(best, float64(sa)/float64(sb))
		}
	}
	return best
}

// spanRatio is the ratio of a's sum to b's over [from, to), or 0 when b's
// is 0.
func spanRatio(a, b []int, from, to int) float64 {
	sa, sb := 0, 0
	for i := from; i < to && i < len(a) && i < len(b); i++ {
		sa += a[i]
		sb += b[i]
	}
	if sb == 0 {
		return 0
	}
	return float64(sa) / float64(sb)
}

// perSecond sums ticks into buckets of d and scales them to a rate.
func perSecond(xs []int, d time.Duration) []float64 {
	k := int(d / metaTick)
	out := make([]float64, 0, len(xs)/k+1)
	for i := 0; i+k <= len(xs); i += k {
		s := 0
		for _, x := range xs[i : i+k] {
			s += x
		}
		out = append(out, float64(s)/d.Seconds())
	}
	return out
}
