package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/metrics"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// ---- 1. Happy path ----

type happyResult struct {
	lib                     string
	getNs, putNs            float64
	getBytes, putBytes      int64
	getAllocs, putAllocs    int64
	getRatio, putRatio      float64
	getIQR, putIQR          [2]float64 // the middle half of the blocks' ratios
	ownNs                   float64    // the wrapper's own cost per request, without the network
	ownAllocs               int64
	peakConcurrentPutBytes  uint64
	concurrentPuts, putSize int
}

// happyPath measures, for every contender, a GET and a 1 MiB PUT whose
// first attempt succeeds, with testing.Benchmark, rounds times over,
// interleaving the contenders so that drift on the machine hits all alike,
// and keeps each one's fastest round.
func happyPath(cfg config) []happyResult {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	payload := bytes.Repeat([]byte("x"), 1<<20)

	results := make([]happyResult, len(libraries))
	for i, lib := range libraries {
		results[i] = happyResult{lib: lib.name, getNs: 1e18, putNs: 1e18, concurrentPuts: cfg.concurrentPuts, putSize: len(payload)}
	}
	for round := range cfg.benchRounds {
		for k := range libraries {
			// Rotate who goes first, so that no contender always runs on
			// a cold or a warm machine.
			i := (k + round) % len(libraries)
			lib := libraries[i]
			base := newBase()
			rt := lib.wrap(base)
			get := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
					mustDrain(rt.RoundTrip(req))
				}
			})
			put := testing.Benchmark(func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					req, _ := http.NewRequest(http.MethodPut, srv.URL, bytes.NewReader(payload))
					mustDrain(rt.RoundTrip(req))
				}
			})
			base.CloseIdleConnections()
			r := &results[i]
			if ns := float64(get.NsPerOp()); ns < r.getNs {
				r.getNs, r.getBytes, r.getAllocs = ns, get.AllocedBytesPerOp(), get.AllocsPerOp()
			}
			if ns := float64(put.NsPerOp()); ns < r.putNs {
				r.putNs, r.putBytes, r.putAllocs = ns, put.AllocedBytesPerOp(), put.AllocsPerOp()
			}
		}
	}
	// Own costs: the best of interleaved rounds, each less the bare one.
	ownNs := make([]float64, len(libraries))
	ownAllocs := make([]int64, len(libraries))
	for round := range cfg.benchRounds { // 3 in the full run, 1 in -quick
		for k := range libraries {
			i := (k + round) % len(libraries)
			own := ownCost(libraries[i])
			if ns := float64(own.NsPerOp()); round == 0 || ns < ownNs[i] {
				ownNs[i], ownAllocs[i] = ns, own.AllocsPerOp()
			}
		}
	}
	for i := range libraries {
		results[i].ownNs = ownNs[i] - ownNs[0]
		results[i].ownAllocs = ownAllocs[i] - ownAllocs[0]
	}
	results[0].getRatio, results[0].putRatio = 1, 1
	for i := 1; i < len(libraries); i++ {
		results[i].getRatio, results[i].getIQR = pairedRatio(cfg, srv.URL, nil, libraries[i])
		results[i].putRatio, results[i].putIQR = pairedRatio(cfg, srv.URL, payload, libraries[i])
	}
	for i, lib := range libraries {
		results[i].peakConcurrentPutBytes = peakHeapDuring(func() {
			base := newBase()
			defer base.CloseIdleConnections()
			rt := lib.wrap(base)
			var wg sync.WaitGroup
			for range cfg.concurrentPuts {
				wg.Go(func() {
					req, _ := http.NewRequest(http.MethodPut, srv.URL, bytes.NewReader(payload))
					mustDrain(rt.RoundTrip(req))
				})
			}
			wg.Wait()
		})
	}
	return results
}

// cannedTransport answers every request at once with a fresh 200 response
// and no body, so that a benchmark through it measures the wrapper alone.
type cannedTransport struct{}

func (cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// ownCost benchmarks lib over cannedTransport: the cost of the wrapper on a
// request whose first attempt succeeds, free of the network's noise.
func ownCost(lib library) testing.BenchmarkResult {
	rt := lib.wrap(cannedTransport{})
	return testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
			mustDrain(rt.RoundTrip(req))
		}
	})
}

// pairedRatio times lib against the bare transport in blocks of short runs
// of the same request (a GET, or a PUT of payload), and returns the median
// of the blocks' time ratios, and their middle half. Blocks cancel the drift
// of a shared machine, and the advantage of running first or last, which
// the ratio of two separate benchmarks does not.
func pairedRatio(cfg config, url string, payload []byte, lib library) (median float64, iqr [2]float64) {
	base := newBase()
	defer base.CloseIdleConnections()
	bare, ours := libraries[0].wrap(base), lib.wrap(base)
	send := func(rt http.RoundTripper, n int) time.Duration {
		start := time.Now()
		for range n {
			method, body := http.MethodGet, io.Reader(nil)
			if payload != nil {
				method, body = http.MethodPut, bytes.NewReader(payload)
			}
			req, _ := http.NewRequest(method, url, body)
			mustDrain(rt.RoundTrip(req))
		}
		return time.Since(start)
	}
	// Enough requests for about cfg.pairRun a run.
	n := max(10, int(cfg.pairRun/max(send(bare, 10)/10, time.Microsecond)))
	ratios := make([]float64, 0, cfg.pairs)
	for range cfg.pairs {
		// Bare, ours, ours, bare: each side runs once early and once late,
		// so that neither gains from its place in the block.
		b := send(bare, n)
		o := send(ours, n)
		o += send(ours, n)
		b += send(bare, n)
		ratios = append(ratios, float64(o)/float64(b))
	}
	slices.Sort(ratios)
	n = len(ratios)
	return ratios[n/2], [2]float64{ratios[n/4], ratios[(3*n)/4]}
}

func mustDrain(resp *http.Response, err error) {
	if err != nil {
		panic(fmt.Sprintf("happy path failed: %v", err))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

// peakHeapDuring runs f and returns the highest heap use seen while it ran,
// above what was in use before.
func peakHeapDuring(f func()) uint64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	runtime.GC()
	before := read()
	var peak atomic.Uint64
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if v := read(); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(200 * time.Microsecond):
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	if peak.Load() < before {
		return 0
	}
	return peak.Load() - before
}

// ---- a server that counts ----

// countingServer answers with answer(n) to its n-th request (from 1) and
// records when each request arrived.
type countingServer struct {
	*httptest.Server
	start    time.Time
	mu       sync.Mutex
	arrivals []time.Duration // since start
}

func newCountingServer(answer func(n int, w http.ResponseWriter, r *http.Request)) *countingServer {
	s := &countingServer{start: time.Now()}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.arrivals = append(s.arrivals, time.Since(s.start))
		n := len(s.arrivals)
		s.mu.Unlock()
		answer(n, w, r)
	}))
	return s
}

func (s *countingServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.arrivals)
}

// ---- 2. Total outage ----

type outageResult struct {
	lib            string
	requests       int
	attempts       int
	amplification  float64
	p50, p99, maxT time.Duration
}

// totalOutage sends cfg.outageClients concurrent GETs through one client per
// contender to a server that only answers 503, and counts the attempts it
// sees. Contenders run at once, each against its own server.
func totalOutage(cfg config) []outageResult {
	libs := retryingLibraries()
	results := make([]outageResult, len(libs))
	var wg sync.WaitGroup
	for i, lib := range libs {
		wg.Go(func() {
			srv := newCountingServer(func(_ int, w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusServiceUnavailable)
			})
			defer srv.Close()
			client, closeIdle := clientFor(lib)
			defer closeIdle()
			times := runConcurrently(cfg.outageClients, func(int) { get(client, srv.URL) })
			results[i] = outageResult{
				lib: lib.name, requests: cfg.outageClients, attempts: srv.count(),
				amplification: float64(srv.count()) / float64(cfg.outageClients),
				p50:           percentile(times, 0.5), p99: percentile(times, 0.99), maxT: percentile(times, 1),
			}
		})
	}
	wg.Wait()
	return results
}

// runConcurrently runs n calls of f at once and returns how long each took.
func runConcurrently(n int, f func(i int)) []time.Duration {
	times := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			start := time.Now()
			f(i)
			times[i] = time.Since(start)
		})
	}
	wg.Wait()
	return times
}

// clientFor returns a client that sends through lib over a fresh base
// transport, and the function that closes the base's idle connections.
func clientFor(lib library) (*http.Client, func()) {
	base := newBase()
	return &http.Client{Transport: lib.wrap(base)}, base.CloseIdleConnections
}

// get sends a GET and reports the final status, or 0 for an error.
func get(client *http.Client, url string) int {
	resp, err := client.Get(url)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.5) - 1
	return s[max(0, min(i, len(s)-1))]
}

// ---- 3. Brief outage ----

type briefResult struct {
	lib            string
	retryAfter     bool
	requests       int
	succeeded      int
	attempts       int
	p50OK, p90OK   time.Duration
	maxOK          time.Duration
	outage, window time.Duration
}

// briefOutage offers requests at a steady rate over twice the outage, to a
// server that answers 503 (with or without Retry-After: 1) until the outage
// ends and 200 after.
func briefOutage(cfg config) []briefResult {
	var results []briefResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, withRA := range []bool{false, true} {
		for _, lib := range retryingLibraries() {
			wg.Go(func() {
				r := briefOutageOne(cfg, lib, withRA)
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	slices.SortFunc(results, func(a, b briefResult) int {
		if a.retryAfter != b.retryAfter {
			return boolInt(a.retryAfter) - boolInt(b.retryAfter)
		}
		return libIndex(a.lib) - libIndex(b.lib)
	})
	return results
}

func briefOutageOne(cfg config, lib library, withRA bool) briefResult {
	var srv *countingServer
	srv = newCountingServer(func(_ int, w http.ResponseWriter, _ *http.Request) {
		if time.Since(srv.start) < cfg.outage {
			if withRA {
				w.Header().Set("Retry-After", "1")
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	defer srv.Close()
	client, closeIdle := clientFor(lib)
	defer closeIdle()

	window := 2 * cfg.outage
	n := cfg.briefRequests
	var okTimes []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		time.Sleep(time.Until(srv.start.Add(window * time.Duration(i) / time.Duration(n))))
		wg.Go(func() {
			start := time.Now()
			if get(client, srv.URL) == http.StatusOK {
				mu.Lock()
				okTimes = append(okTimes, time.Since(start))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return briefResult{
		lib: lib.name, retryAfter: withRA, requests: n, succeeded: len(okTimes), attempts: srv.count(),
		p50OK: percentile(okTimes, 0.5), p90OK: percentile(okTimes, 0.9), maxOK: percentile(okTimes, 1),
		outage: cfg.outage, window: window,
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func libIndex(name string) int {
	return slices.IndexFunc(libraries, func(l library) bool { return l.name == name })
}

// ---- 4. Herd ----

type herdResult struct {
	lib          string
	clients      int
	retries      int
	early        int
	earliest     time.Duration // earliest retry against the moment named, negative if early
	peakPer100ms int
	offsets      []time.Duration // each retry's arrival against the moment named
}

// herd makes cfg.herdClients clients, each with its own transport as
// separate processes would have, send a GET at once to a server that tells
// each "Retry-After: 2" on its first request, and records when the retries
// arrive against the moment each client was told. Contenders run one after
// another in the full run, at once (each against its own server) in -quick.
func herd(cfg config) []herdResult {
	libs := retryingLibraries()
	results := make([]herdResult, len(libs))
	var wg sync.WaitGroup
	for i, lib := range libs {
		if cfg.quick {
			wg.Go(func() { results[i] = herdOne(cfg, lib) })
		} else {
			results[i] = herdOne(cfg, lib)
		}
	}
	wg.Wait()
	return results
}

func herdOne(cfg config, lib library) herdResult {
	const told = 2 * time.Second
	var mu sync.Mutex
	namedMoment := map[string]time.Time{}
	var offsets []time.Duration
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Client")
		now := time.Now()
		mu.Lock()
		named, seen := namedMoment[id]
		if !seen {
			namedMoment[id] = now.Add(told)
		} else {
			offsets = append(offsets, now.Sub(named))
		}
		mu.Unlock()
		if !seen {
			w.Header().Set("Retry-After", strconv.Itoa(int(told/time.Second)))
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()
	base := newBase()
	defer base.CloseIdleConnections()
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range cfg.herdClients {
		client := &http.Client{Transport: lib.wrap(base)} // one per client: its own budget
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
			req.Header.Set("X-Client", strconv.Itoa(i))
			<-start
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	close(start)
	wg.Wait()

	r := herdResult{lib: lib.name, clients: cfg.herdClients, retries: len(offsets), offsets: offsets}
	if len(offsets) > 0 {
		r.earliest = slices.Min(offsets)
	}
	buckets := map[int64]int{}
	for _, o := range offsets {
		if o < 0 {
			r.early++
		}
		buckets[int64(o/(100*time.Millisecond))]++
	}
	for _, c := range buckets {
		r.peakPer100ms = max(r.peakPer100ms, c)
	}
	return r
}

// ---- 5. Overload ----

type overloadResult struct {
	lib                string
	offered            int
	succeeded          int           // requests that ended in 200
	attempts           int           // attempts the server saw, in all
	lastAnswer         time.Duration // until every request was answered
	goodput, load      float64       // per second, in the steady window
	capacity, offerRPS float64
}

// overload offers cfg.overloadRPS requests a second for cfg.overloadFor to a
// server that serves at most overloadSlots requests at once, each taking
// overloadWork, and answers 503 with Retry-After: 1 to any beyond. Its
// capacity is overloadSlots/overloadWork requests a second. Goodput and load
// are counted by the server in the steady window: from one second after the
// start to the end of the offered load. Contenders run one after another in
// the full run, at once (each against its own server) in -quick.
func overload(cfg config) []overloadResult {
	results := make([]overloadResult, len(libraries))
	var wg sync.WaitGroup
	for i, lib := range libraries {
		if cfg.quick {
			wg.Go(func() { results[i] = overloadOne(cfg, lib) })
		} else {
			results[i] = overloadOne(cfg, lib)
		}
	}
	wg.Wait()
	return results
}

const (
	overloadSlots  = 10
	overloadWork   = 50 * time.Millisecond
	overloadWarmup = time.Second
)

func overloadOne(cfg config, lib library) overloadResult {
	slots := make(chan struct{}, overloadSlots)
	start := time.Now()
	inWindow := func() bool {
		since := time.Since(start)
		return since >= overloadWarmup && since < cfg.overloadFor
	}
	var attempts, windowAttempts, windowServed atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attempts.Add(1)
		if inWindow() {
			windowAttempts.Add(1)
		}
		select {
		case slots <- struct{}{}:
			time.Sleep(overloadWork)
			<-slots
			if inWindow() {
				windowServed.Add(1)
			}
			_, _ = io.WriteString(w, "ok")
		default:
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	client, closeIdle := clientFor(lib)
	defer closeIdle()

	n := int(cfg.overloadRPS * cfg.overloadFor.Seconds())
	interval := time.Duration(float64(time.Second) / cfg.overloadRPS)
	start = time.Now()
	var ok atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		time.Sleep(time.Until(start.Add(interval * time.Duration(i))))
		wg.Go(func() {
			if get(client, srv.URL) == http.StatusOK {
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	window := (cfg.overloadFor - overloadWarmup).Seconds()
	return overloadResult{
		lib: lib.name, offered: n, succeeded: int(ok.Load()), attempts: int(attempts.Load()), lastAnswer: time.Since(start),
		goodput: float64(windowServed.Load()) / window, load: float64(windowAttempts.Load()) / window,
		capacity: overloadSlots / overloadWork.Seconds(), offerRPS: cfg.overloadRPS,
	}
}

// ---- 6. Retry-After forms ----

type formResult struct {
	lib, form string
	told      time.Duration
	waited    time.Duration // from the 503 to the retry, or -1 for no retry
	offset    time.Duration // the retry's arrival against the moment named
	asTold    bool
}

var retryAfterForms = []struct {
	name   string
	layout string // "" for delta-seconds
}{
	{"delta-seconds", ""},
	{"IMF-fixdate", http.TimeFormat},
	{"RFC 850", "Monday, 02-Jan-06 15:04:05 GMT"},
	{"asctime", time.ANSIC},
}

// forms tells each contender, in each form, to come back in 3 s, and
// measures when it does. All run at once, each against its own server.
func forms(cfg config) []formResult {
	const told = 3 * time.Second
	var results []formResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, lib := range retryingLibraries() {
		for _, form := range retryAfterForms {
			wg.Go(func() {
				var sent time.Time
				var retried time.Time
				var named time.Time
				var smu sync.Mutex
				srv := newCountingServer(func(n int, w http.ResponseWriter, _ *http.Request) {
					smu.Lock()
					defer smu.Unlock()
					if n == 1 {
						sent = time.Now()
						if form.layout == "" {
							w.Header().Set("Retry-After", strconv.Itoa(int(told/time.Second)))
							named = sent.Add(told)
						} else {
							// Date and Retry-After in the same form, whole
							// seconds apart.
							date := sent.UTC().Truncate(time.Second)
							named = date.Add(told)
							w.Header().Set("Date", date.Format(form.layout))
							w.Header().Set("Retry-After", named.Format(form.layout))
						}
						w.WriteHeader(http.StatusServiceUnavailable)
						return
					}
					if retried.IsZero() {
						retried = time.Now()
					}
					_, _ = io.WriteString(w, "ok")
				})
				defer srv.Close()
				client, closeIdle := clientFor(lib)
				defer closeIdle()
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				smu.Lock()
				defer smu.Unlock()
				r := formResult{lib: lib.name, form: form.name, told: named.Sub(sent), waited: -1}
				if !retried.IsZero() {
					r.waited = retried.Sub(sent)
					r.offset = retried.Sub(named)
					// As told: not before the moment named, and not later
					// than the jitter allowed (a fifth of the wait, or 1 s
					// if more) and 100 ms of slack; a date may be counted
					// from the Date header, whose whole seconds can add up
					// to 1 s more.
					late := max(told/5, time.Second) + 100*time.Millisecond
					if form.layout != "" {
						late += time.Second
					}
					r.asTold = r.offset >= 0 && r.offset <= late
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	slices.SortFunc(results, func(a, b formResult) int {
		if d := libIndex(a.lib) - libIndex(b.lib); d != 0 {
			return d
		}
		return formIndex(a.form) - formIndex(b.form)
	})
	return results
}

func formIndex(name string) int {
	return slices.IndexFunc(retryAfterForms, func(f struct{ name, layout string }) bool { return f.name == name })
}
