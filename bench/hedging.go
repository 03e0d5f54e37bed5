package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go/failsafehttp"
	"github.com/failsafe-go/failsafe-go/hedgepolicy"
	"resty.dev/v3"

	"github.com/b4dedce7/retryhttp"
)

// ---- 9. Hedging: a heavy tail, and everything slow ----

// hedgeFixedDelay is the fixed hedge delay given to the contenders that take
// one: twice the server's usual 5 ms, so that an ordinary answer is never
// hedged and a slow one is hedged early.
const hedgeFixedDelay = 10 * time.Millisecond

// hedger is one contender of the hedging scenarios: a way to wrap a base
// transport, and how it was set up.
type hedger struct {
	name  string
	setup string
	wrap  func(base http.RoundTripper) http.RoundTripper
}

var hedgers = []hedger{
	{"bare transport", "no hedging", func(base http.RoundTripper) http.RoundTripper { return base }},
	{"retryhttp, fixed", "`Policy.Hedge = &Hedge{Delay: 10ms}`, other fields default (the per-host budget)", func(base http.RoundTripper) http.RoundTripper {
		return &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{Hedge: &retryhttp.Hedge{Delay: hedgeFixedDelay}}}
	}},
	{"retryhttp, adaptive", "`Policy.Hedge = &Hedge{}`: the recent p95 per host, other fields default", func(base http.RoundTripper) http.RoundTripper {
		return &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{Hedge: &retryhttp.Hedge{}}}
	}},
	{"failsafehttp, fixed", "`hedgepolicy.NewWithDelay(10ms)` (1 hedge)", func(base http.RoundTripper) http.RoundTripper {
		return failsafehttp.NewRoundTripper(base, hedgepolicy.NewWithDelay[*http.Response](hedgeFixedDelay))
	}},
	{"failsafehttp, p95", "`hedgepolicy.NewWithDelayQuantile(0.95, 100, 20)` (1 hedge)", func(base http.RoundTripper) http.RoundTripper {
		return failsafehttp.NewRoundTripper(base, hedgepolicy.NewWithDelayQuantile[*http.Response](0.95, 100, 20))
	}},
	{"resty", "`SetHedging(NewHedging())`, its defaults: 50 ms delay, up to 3 requests, `SetMaxRequestPerSecond(3)`", func(base http.RoundTripper) http.RoundTripper {
		c := resty.New().SetTransport(base)
		c.SetLogger(quietLogger{})
		c.SetHedging(resty.NewHedging())
		return restyTransport{c}
	}},
}

// hedgeParams size the two scenarios.
type hedgeParams struct {
	rate     float64       // requests offered per second
	tailFor  time.Duration // how long the heavy-tail load is offered
	before   time.Duration // everything slow: normal service before the slow spell
	slowFor  time.Duration // how long everything is slow
	after    time.Duration // normal service after it
	fast     time.Duration // the usual time to answer
	slow     time.Duration // a slow answer in the heavy tail
	slowProb float64       // the share of slow answers in the heavy tail
	factor   float64       // everything slow: the slowdown
	seed     uint64
}

func hedgeFullParams() hedgeParams {
	return hedgeParams{rate: 100, tailFor: 30 * time.Second, before: 5 * time.Second, slowFor: 10 * time.Second, after: 5 * time.Second,
		fast: 5 * time.Millisecond, slow: time.Second, slowProb: 0.02, factor: 10, seed: 7}
}

// hedgeServer answers every attempt after a time the scenario draws, and
// counts the attempts by arrival tick.
type hedgeServer struct {
	*httptest.Server
	start      time.Time
	attempts   []atomic.Int64 // by arrival tick of metaTick
	total      atomic.Int64
	perRequest []atomic.Int32 // by the request's X-Request-Index, which its copies carry too
}

func newHedgeServer(start time.Time, span time.Duration, requests int, latency func(arrival time.Duration) time.Duration) *hedgeServer {
	s := &hedgeServer{start: start, attempts: make([]atomic.Int64, ticks(span)+1), perRequest: make([]atomic.Int32, requests)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Since(s.start)
		s.attempts[min(max(0, ticks(at)), len(s.attempts)-1)].Add(1)
		s.total.Add(1)
		if i, err := strconv.Atoi(r.Header.Get("X-Request-Index")); err == nil && i >= 0 && i < len(s.perRequest) {
			s.perRequest[i].Add(1)
		}
		timer := time.NewTimer(latency(at))
		defer timer.Stop()
		select {
		case <-timer.C:
			_, _ = io.WriteString(w, "ok")
		case <-r.Context().Done(): // a cancelled hedge or a cancelled original frees the server
		}
	}))
	return s
}

// hedgeResult is what one contender measured in one scenario.
type hedgeResult struct {
	lib, setup     string
	requests       int
	failed         int
	attempts       int
	p50, p99, p999 time.Duration
	extra          float64 // attempts per request − 1
	// Everything slow: the same within the slow spell, and the attempts
	// the server received per tick, and the requests offered per tick.
	slowRequests, slowAttempts int
	slowExtra                  float64
	slowP99                    time.Duration
	load, offered              []int
}

// offerLoad sends GETs through client to url at rate a second for d, from
// start, and returns each request's time and start offset, and how many
// failed.
func offerLoad(client *http.Client, url string, start time.Time, rate float64, d time.Duration) (times, offsets []time.Duration, failed int) {
	n := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	times = make([]time.Duration, n)
	offsets = make([]time.Duration, n)
	var bad atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		time.Sleep(time.Until(start.Add(interval * time.Duration(i))))
		wg.Go(func() {
			began := time.Now()
			offsets[i] = began.Sub(start)
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("X-Request-Index", strconv.Itoa(i))
			resp, err := client.Do(req)
			if err != nil {
				bad.Add(1)
			} else {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					bad.Add(1)
				}
			}
			times[i] = time.Since(began)
		})
	}
	wg.Wait()
	return times, offsets, int(bad.Load())
}

// heavyTail offers p.rate GETs a second for p.tailFor to a server whose
// every attempt independently takes p.fast, or p.slow with probability
// p.slowProb, through each hedging contender at once, each against its own
// server, and reports the latency percentiles and the extra load.
func heavyTail(p hedgeParams) []hedgeResult {
	results := make([]hedgeResult, len(hedgers))
	var wg sync.WaitGroup
	for i, h := range hedgers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(p.seed, uint64(i)))
			var mu sync.Mutex
			start := time.Now().Add(50 * time.Millisecond)
			srv := newHedgeServer(start, p.tailFor+5*time.Second, int(p.rate*p.tailFor.Seconds()), func(time.Duration) time.Duration {
				mu.Lock()
				defer mu.Unlock()
				if rng.Float64() < p.slowProb {
					return p.slow
				}
				return p.fast
			})
			defer srv.Close()
			base := newBase()
			defer base.CloseIdleConnections()
			client := &http.Client{Transport: h.wrap(base)}
			times, _, failed := offerLoad(client, srv.URL, start, p.rate, p.tailFor)
			results[i] = hedgeResult{
				lib: h.name, setup: h.setup, requests: len(times), failed: failed, attempts: int(srv.total.Load()),
				p50: percentile(times, 0.5), p99: percentile(times, 0.99), p999: percentile(times, 0.999),
				extra: float64(srv.total.Load())/float64(len(times)) - 1,
			}
		})
	}
	wg.Wait()
	return results
}

// everythingSlow offers p.rate GETs a second to a server that answers in
// p.fast, but in p.fast × p.factor during a spell of p.slowFor after
// p.before, as an overloaded server would, through each hedging contender
// at once, each against its own server. It reports the extra load within
// the spell and overall.
func everythingSlow(p hedgeParams) []hedgeResult {
	span := p.before + p.slowFor + p.after
	results := make([]hedgeResult, len(hedgers))
	var wg sync.WaitGroup
	for i, h := range hedgers {
		wg.Go(func() {
			start := time.Now().Add(50 * time.Millisecond)
			srv := newHedgeServer(start, span+5*time.Second, int(p.rate*span.Seconds()), func(at time.Duration) time.Duration {
				if at >= p.before && at < p.before+p.slowFor {
					return time.Duration(float64(p.fast) * p.factor)
				}
				return p.fast
			})
			defer srv.Close()
			base := newBase()
			defer base.CloseIdleConnections()
			client := &http.Client{Transport: h.wrap(base)}
			times, offsets, failed := offerLoad(client, srv.URL, start, p.rate, span)
			r := hedgeResult{
				lib: h.name, setup: h.setup, requests: len(times), failed: failed, attempts: int(srv.total.Load()),
				p50: percentile(times, 0.5), p99: percentile(times, 0.99), p999: percentile(times, 0.999),
				extra: float64(srv.total.Load())/float64(len(times)) - 1,
			}
			r.offered = make([]int, len(srv.attempts))
			var slowTimes []time.Duration
			for k, off := range offsets {
				r.offered[min(ticks(off), len(r.offered)-1)]++
				if off >= p.before && off < p.before+p.slowFor {
					r.slowRequests++
					r.slowAttempts += int(srv.perRequest[k].Load())
					slowTimes = append(slowTimes, times[k])
				}
			}
			r.load = make([]int, len(srv.attempts))
			for k := range srv.attempts {
				r.load[k] = int(srv.attempts[k].Load())
			}
			r.slowExtra = float64(r.slowAttempts)/float64(max(r.slowRequests, 1)) - 1
			r.slowP99 = percentile(slowTimes, 0.99)
			results[i] = r
		})
	}
	wg.Wait()
	return results
}

// ---- 11. Metastable failure with hedging on ----

// metaHedgeDelay is the fixed hedge delay of the metastable scenario's
// hedged contender: about three times the queue's usual wait at 90% load.
const metaHedgeDelay = 50 * time.Millisecond

var metaHedgeContenders = []string{"bare transport", "retryhttp", "retryhttp hedged, adaptive", "retryhttp hedged, fixed"}

// metastableHedged runs the metastable scenario for the bare transport,
// retryhttp without hedging, and retryhttp with hedging on, adaptive and
// fixed, one after another in the full run, at once in the quick one.
func metastableHedged(p metaParams, concurrent bool) []metaResult {
	native := attemptTimeoutEnforced()
	sched := metaSchedule(p)
	results := make([]metaResult, len(metaHedgeContenders))
	if concurrent {
		var wg sync.WaitGroup
		for i, lib := range metaHedgeContenders {
			wg.Go(func() { results[i] = metastableOne(p, lib, sched, native) })
		}
		wg.Wait()
	} else {
		for i, lib := range metaHedgeContenders {
			results[i] = metastableOne(p, lib, sched, native)
		}
	}
	for i := range results {
		r := &results[i]
		r.maxLoadRatio = maxWindowRatio(r.load, r.offered, ticks(p.warmup), ticks(p.runFor()))
	}
	return results
}

// metaHedgedClient is the client of a hedged retryhttp contender of the
// metastable scenario.
func metaHedgedClient(lib string, base http.RoundTripper, limit time.Duration) (*http.Client, string) {
	h := &retryhttp.Hedge{}
	setup := fmt.Sprintf("`Policy{AttemptTimeout: %v, Hedge: &Hedge{}}` (adaptive), other fields default", limit)
	if lib == "retryhttp hedged, fixed" {
		h.Delay = metaHedgeDelay
		setup = fmt.Sprintf("`Policy{AttemptTimeout: %v, Hedge: &Hedge{Delay: %v}}`, other fields default", limit, metaHedgeDelay)
	}
	return &http.Client{Transport: &retryhttp.Transport{Base: base, Policy: retryhttp.Policy{AttemptTimeout: limit, Hedge: h}}}, setup
}
