package main

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"syscall"
	"time"

	"github.com/b4dedce7/retryhttp"
)

// A discrete-event simulation in virtual time of many clients against one
// server, for the fleet scale that loopback cannot reach.
//
// retryhttp's clients are real retryhttp.Transport values: their Clock is the
// simulation's virtual clock and their Base the simulated server, so that
// every decision (attempts, backoff and its jitter, MaxElapsed, the Budget)
// is retryhttp's own code. Each request runs on a coroutine (iter.Pull); a
// coroutine blocks, handing control back to the scheduler, when the Base
// waits for the server's answer or the Clock sleeps, and the scheduler
// resumes it when virtual time reaches its event. Only one coroutine of a
// simulation runs at any moment, so the simulation needs no locks and runs
// as fast as the events allow. The peers are models of their documented
// defaults, labelled so.

// simEpoch is the virtual time 0 of every simulation.
var simEpoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

type simEvent struct {
	at   time.Duration
	seq  uint64
	call *simCall // resumed at `at`, or
	fn   func()   // run at `at`
}

type eventHeap []simEvent

func (h eventHeap) Len() int { return len(h) }
func (h eventHeap) Less(i, j int) bool {
	return h[i].at < h[j].at || (h[i].at == h[j].at && h[i].seq < h[j].seq)
}
func (h eventHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *eventHeap) Push(x any)   { *h = append(*h, x.(simEvent)) }
func (h *eventHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// sim is one simulation: a scheduler, a server, and counts by tick.
type sim struct {
	now    time.Duration
	seq    uint64
	events eventHeap
	server simServer
	limit  time.Duration // every client's per-attempt limit; 0 for none
	// counts by metaTick
	offered, load, goodput []int
	attempts, requests     int
	okCount                int
	answerTimes            []time.Duration // of every request, in order of completion
	calls                  []*simCall      // every request started
	halt                   bool            // end the run at the next event
	// retryAfter, if not 0, is the Retry-After (s) on the server's 503s
	retryAfter int
}

// simServer decides the fate of an attempt that arrives now: its status and
// when the answer leaves the server. It may keep working after the client
// stopped waiting (see queueServer).
type simServer interface {
	arrive(now time.Duration) (status int, at time.Duration)
}

func newSim(server simServer, limit, length time.Duration) *sim {
	n := ticks(length) + 1
	return &sim{server: server, limit: limit,
		offered: make([]int, n), load: make([]int, n), goodput: make([]int, n)}
}

func (s *sim) tick(t time.Duration) int { return min(max(0, ticks(t)), len(s.load)-1) }

func (s *sim) schedule(e simEvent) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.events, e)
}

// after runs fn at virtual time at.
func (s *sim) after(at time.Duration, fn func()) { s.schedule(simEvent{at: at, fn: fn}) }

// run processes events until none is left or virtual time passes end.
func (s *sim) run(end time.Duration) {
	for s.events.Len() > 0 {
		e := heap.Pop(&s.events).(simEvent)
		if e.at > end || s.halt {
			break
		}
		s.now = e.at
		if e.call != nil {
			e.call.resume()
		} else {
			e.fn()
		}
	}
	// Unwind the coroutines still blocked.
	s.events = nil
	for _, c := range s.calls {
		if !c.done {
			c.stop()
		}
	}
	s.calls = nil
}

// simCall is one request in flight, on its own coroutine.
type simCall struct {
	s        *sim
	yield    func(struct{}) bool
	next     func() (struct{}, bool)
	stop     func()
	start    time.Duration
	attempts int
	done     bool
	// for a retry waiting for a budget model's token
	waiting bool
	granted bool
}

type callKey struct{}

func callOf(ctx context.Context) *simCall { return ctx.Value(callKey{}).(*simCall) }

// start begins a request now: do runs on a coroutine of its own and reports
// success.
func (s *sim) start(do func(ctx context.Context) bool) {
	c := &simCall{s: s, start: s.now}
	s.requests++
	s.offered[s.tick(s.now)]++
	ctx := context.WithValue(context.Background(), callKey{}, c)
	s.calls = append(s.calls, c)
	c.next, c.stop = iter.Pull(func(yield func(struct{}) bool) {
		defer func() {
			c.done = true
			if r := recover(); r != nil && r != errSimStopped {
				panic(r)
			}
		}()
		c.yield = yield
		ok := do(ctx)
		s.answerTimes = append(s.answerTimes, s.now-c.start)
		if ok {
			s.okCount++
			s.goodput[s.tick(s.now)]++
		}
	})
	c.next()
}

// block hands control back to the scheduler until the call is resumed.
func (c *simCall) block() {
	if !c.yield(struct{}{}) {
		panic(errSimStopped) // the simulation ended: unwind the coroutine
	}
}

var errSimStopped = errors.New("simulation stopped")

func (c *simCall) resume() { c.next() }

// wake resumes the call at virtual time at.
func (c *simCall) wakeAt(at time.Duration) { c.s.schedule(simEvent{at: at, call: c}) }

// sleep waits d of virtual time.
func (c *simCall) sleep(d time.Duration) {
	if d <= 0 {
		return
	}
	c.wakeAt(c.s.now + d)
	c.block()
}

// attempt sends one attempt to the server and waits for its answer or for
// the per-attempt limit: 0 for a timeout, else the status.
func (c *simCall) attempt() int {
	s := c.s
	c.attempts++
	s.attempts++
	s.load[s.tick(s.now)]++
	status, at := s.server.arrive(s.now)
	if s.limit > 0 && at-s.now > s.limit {
		status, at = 0, s.now+s.limit // the client gives up; the server works on
	}
	if at > s.now {
		c.wakeAt(at)
		c.block()
	}
	return status
}

// simClock is the virtual clock of a simulation, for retryhttp.Policy.Clock.
// The Transport sleeps once before each retry, after its own checks passed:
// when gate is not nil, that is where the budget model decides, before the
// wait as retryhttp's Budget does. A design that waits for a token counts
// the time it waited against the backoff's.
type simClock struct {
	s    *sim
	gate *budgetModel
}

func (k simClock) Now() time.Time { return simEpoch.Add(k.s.now) }

func (k simClock) Sleep(ctx context.Context, d time.Duration) error {
	c := callOf(ctx)
	if k.gate != nil {
		from := k.s.now
		if !k.gate.acquire(c) {
			return errNoToken
		}
		d -= k.s.now - from
	}
	c.sleep(d)
	return nil
}

// errSimTimeout is the error of an attempt that ran out of its limit: it
// wraps ErrAttemptTimeout, and ECONNRESET so that any classification
// retries it, as the issue requires of attempt timeouts.
var errSimTimeout error = simTimeoutError{}

type simTimeoutError struct{}

func (simTimeoutError) Error() string { return "sim: attempt timed out" }
func (simTimeoutError) Timeout() bool { return true }
func (simTimeoutError) Unwrap() []error {
	return []error{retryhttp.ErrAttemptTimeout, syscall.ECONNRESET}
}

// errNoToken ends a request whose retry a budget model refused; no
// classification retries it.
var errNoToken = errors.New("sim: budget model refused the retry")

// simBase is the simulated server as a retryhttp Base. gate, if not nil, is
// a budget model that must allow each retry.
type simBase struct {
	gate *budgetModel
}

func (b simBase) RoundTrip(req *http.Request) (*http.Response, error) {
	c := callOf(req.Context())
	retry := c.attempts > 0
	if b.gate != nil && !retry {
		b.gate.request()
	}
	status := c.attempt()
	if b.gate != nil {
		b.gate.outcome(c, retry, status == http.StatusOK)
	}
	if status == 0 {
		return nil, errSimTimeout
	}
	h := http.Header{}
	if status == http.StatusServiceUnavailable && c.s.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(c.s.retryAfter))
	}
	return &http.Response{StatusCode: status, Header: h, Body: http.NoBody, Request: req}, nil
}

// ---- the clients of the simulation ----

// simClient makes the request function of one simulated process.
type simClient struct {
	name  string
	model bool // a model of the library's documented defaults, not its code
	make  func(s *sim) func(ctx context.Context) bool
	// retryAfter, if not 0, makes the server of this client's runs name
	// this wait (s) on its 503s
	retryAfter int
}

// retryhttpClient runs a real retryhttp.Transport with its defaults, the
// virtual clock, the simulated server, and the budget given (nil: the
// Transport's own default), gated by a budget model if gate is not nil.
func retryhttpClient(s *sim, budget *retryhttp.Budget, gate *budgetModel) func(ctx context.Context) bool {
	t := &retryhttp.Transport{Base: simBase{gate: gate}, Policy: retryhttp.Policy{Clock: simClock{s: s, gate: gate}, Budget: budget}}
	return func(ctx context.Context) bool {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://sim.invalid/", nil)
		resp, err := t.RoundTrip(req)
		return err == nil && resp.StatusCode == http.StatusOK
	}
}

// retryhttpNamedWaitClient is a process of retryhttp's real Transport with
// its default Policy, for a server that names its waits (Retry-After on its
// 503s): the Transport reads the header, and its own decision (the wait,
// the jitter, whether the Budget is charged) makes each retry.
//
// What it leaves out: the quota holds between requests. After a 503 with
// Retry-After, a hold makes a process's later requests wait for the reset,
// and some of those waits are for another request's answer, in real time
// (not on the Clock), which would stop a simulation that runs one request
// at a time. So each request goes to a destination of its own (its own
// host name): a request's own retries meet its hold, no other request
// does; and the Budget is NewBudget(DefaultBudgetRatio,
// DefaultBudgetBurst), one window for the process, as the default
// per-destination Budget is for a process with one destination.
func retryhttpNamedWaitClient(s *sim) func(ctx context.Context) bool {
	t := &retryhttp.Transport{Base: simBase{}, Policy: retryhttp.Policy{Clock: simClock{s: s},
		Budget: retryhttp.NewBudget(retryhttp.DefaultBudgetRatio, retryhttp.DefaultBudgetBurst)}}
	var n uint64 // one coroutine runs at a time
	return func(ctx context.Context) bool {
		n++
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://r"+strconv.FormatUint(n, 36)+".sim.invalid/", nil)
		resp, err := t.RoundTrip(req)
		return err == nil && resp.StatusCode == http.StatusOK
	}
}

// namedWaitSimClients are the stability map's retryhttp rows for servers
// that send Retry-After: N on their 503s, one per N.
func namedWaitSimClients(ns []int) []simClient {
	var out []simClient
	for _, n := range ns {
		out = append(out, simClient{name: fmt.Sprintf("retryhttp, Retry-After: %d", n), make: retryhttpNamedWaitClient, retryAfter: n})
	}
	return out
}

var simClients = []simClient{
	{name: "bare transport", make: func(s *sim) func(ctx context.Context) bool {
		return func(ctx context.Context) bool { return callOf(ctx).attempt() == http.StatusOK }
	}},
	{name: "retryhttp", make: func(s *sim) func(ctx context.Context) bool { return retryhttpClient(s, nil, nil) }},
	// go-retryablehttp v0.7.8 defaults: RetryMax 4 (5 attempts), every
	// error and every 5xx but 501 retried, DefaultBackoff: RetryWaitMin
	// (1 s) × 2^n capped at RetryWaitMax (30 s), no jitter.
	{name: "go-retryablehttp", model: true, make: func(s *sim) func(ctx context.Context) bool {
		return func(ctx context.Context) bool {
			c := callOf(ctx)
			for n := 0; ; n++ {
				st := c.attempt()
				if st == http.StatusOK || (st != 0 && st < 500) || n == 4 {
					return st == http.StatusOK
				}
				c.sleep(min(time.Duration(float64(time.Second)*math.Pow(2, float64(n))), 30*time.Second))
			}
		}
	}},
	// failsafehttp v0.9.8 default retry policy: 2 retries (3 attempts), no
	// delay, every error and every 5xx but 501 retried.
	{name: "failsafehttp", model: true, make: func(s *sim) func(ctx context.Context) bool {
		return func(ctx context.Context) bool {
			c := callOf(ctx)
			for n := 0; ; n++ {
				st := c.attempt()
				if st == http.StatusOK || (st != 0 && st < 500) || n == 2 {
					return st == http.StatusOK
				}
			}
		}
	}},
	// resty v3.0.0-rc.4 as the bench sets it up: SetRetryCount(3) (4
	// attempts), every error and every 429 and 5xx retried, waits of
	// min(2 s, 100 ms × 2^n)/2 plus as much again at random before retry n
	// (Retry-After, which this server never sends, aside).
	{name: "resty", model: true, make: func(s *sim) func(ctx context.Context) bool {
		return func(ctx context.Context) bool {
			c := callOf(ctx)
			for n := 1; ; n++ {
				st := c.attempt()
				if st == http.StatusOK || (st != 0 && st < 500 && st != http.StatusTooManyRequests) || n == 1+restyRetries {
					return st == http.StatusOK
				}
				half := min(2*time.Second, 100*time.Millisecond<<n) / 2
				c.sleep(half + time.Duration(rand.Int64N(int64(half))))
			}
		}
	}},
}

// ---- servers ----

// queueServer is the server of the metastable scenario, as in the loopback
// one: FIFO, capacity requests a second (a tenth of it while the trigger
// lasts), at most queueLimit waiting, 503 at once beyond, and no notice of
// clients that left.
type queueServer struct {
	capacity   float64
	factor     float64
	trigStart  time.Duration
	trigEnd    time.Duration
	queueLimit int
	free       time.Duration   // when the worker is done with everything admitted
	finishes   []time.Duration // of the requests admitted and not yet done, in order
	head       int
	served     int
}

func (q *queueServer) arrive(now time.Duration) (int, time.Duration) {
	for q.head < len(q.finishes) && q.finishes[q.head] <= now {
		q.head++
	}
	if q.head > 4096 && q.head*2 > len(q.finishes) {
		q.finishes = append(q.finishes[:0], q.finishes[q.head:]...)
		q.head = 0
	}
	// The one in service is not waiting: the queue holds the rest.
	if len(q.finishes)-q.head-1 >= q.queueLimit {
		return http.StatusServiceUnavailable, now
	}
	begin := max(q.free, now)
	rate := q.capacity
	if begin >= q.trigStart && begin < q.trigEnd {
		rate *= q.factor
	}
	q.free = begin + time.Duration(float64(time.Second)/rate)
	q.finishes = append(q.finishes, q.free)
	q.served++
	return http.StatusOK, q.free
}

// outageServer answers 503 until `until` (forever if until < 0), 200 after,
// each after latency.
type outageServer struct {
	until   time.Duration
	latency time.Duration
}

func (o outageServer) arrive(now time.Duration) (int, time.Duration) {
	if o.until < 0 || now < o.until {
		return http.StatusServiceUnavailable, now + o.latency
	}
	return http.StatusOK, now + o.latency
}

// ---- the metastable scenario in the simulation ----

// simSettled is how long a simulated run must stay recovered to end early.
const simSettled = 10 * time.Second

// simMetaResult is one run of the metastable scenario in the simulation.
type simMetaResult struct {
	client    string
	p         metaParams
	recovered bool
	recovery  time.Duration
	offered   []int
	load      []int
	goodput   []int
	requests  int
	attempts  int
	// the highest ratio of attempts to requests offered over the 1 s
	// windows from the start of the trigger to the end of the offered load
	peak float64
}

// simMetastable runs the metastable scenario with p for one kind of client:
// mk makes one process's request function.
func simMetastable(p metaParams, mk func(s *sim) func(ctx context.Context) bool) simMetaResult {
	q := &queueServer{capacity: p.capacity, factor: p.triggerFactor, trigStart: p.warmup,
		trigEnd: p.warmup + p.trigger, queueLimit: p.queueLimit()}
	end := p.runFor() + p.grace
	s := newSim(q, p.limit, end)
	s.retryAfter = p.retryAfter
	procs := make([]func(ctx context.Context) bool, p.clients)
	for i := range procs {
		procs[i] = mk(s)
	}
	rng := rand.New(rand.NewPCG(p.seed, 0x5eed))
	rate := p.load * p.capacity
	var arrive func()
	arrive = func() {
		s.start(procs[rng.IntN(p.clients)])
		next := s.now + time.Duration(rng.ExpFloat64()/rate*float64(time.Second))
		if next < p.runFor() {
			s.after(next, arrive)
		}
	}
	s.after(time.Duration(rng.ExpFloat64()/rate*float64(time.Second)), arrive)
	// A run that has stayed recovered for simSettled ends early: the rest
	// would only cost time.
	trigEnd := p.warmup + p.trigger
	last := ticks(p.runFor())
	var check func()
	check = func() {
		to := s.tick(s.now - time.Second) // answers to what came later may be pending
		if ok, rec := recoveryTime(s.offered, s.goodput, ticks(trigEnd), to); ok && s.now-time.Second-(trigEnd+rec) >= simSettled {
			s.halt, last = true, to
			return
		}
		s.after(s.now+time.Second, check)
	}
	s.after(trigEnd+simSettled+time.Second, check)
	s.run(end)
	r := simMetaResult{p: p, offered: s.offered, load: s.load, goodput: s.goodput, requests: s.requests, attempts: s.attempts}
	r.recovered, r.recovery = recoveryTime(s.offered, s.goodput, ticks(trigEnd), last)
	r.peak = maxWindowRatio(s.load, s.offered, ticks(p.warmup), last)
	return r
}
