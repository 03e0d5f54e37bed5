package main

import (
	"slices"
	"time"

	"github.com/b4dedce7/retryhttp"
)

// budgetDesign is a design of retry budget for the comparison of part 3.
// retryhttp's design runs as its real Budget; every other is a model,
// a gate in the simulated Base that the real Transport (with an
// UnlimitedBudget) passes each retry through.
type budgetDesign struct {
	name  string
	real  bool // retryhttp's own Budget: the Transport's default, or NewFixedBudget(ratio, burst) if fixed
	fixed bool // with real: the token bucket of earlier versions
	// with real: no budget at all
	unlimited bool
	ratio     float64 // tokens deposited per request (or per success)
	burst     float64 // the most tokens held, and the start
	// depositOnSuccess deposits ratio for every attempt that succeeds,
	// instead of for every request.
	depositOnSuccess bool
	// refund gives a retry's token back when the retry succeeds (AWS
	// standard mode).
	refund bool
	// minRate adds tokens a second, whatever the traffic (Finagle's
	// minimum retry rate), up to burst.
	minRate float64
	// wait makes a retry that finds no token wait for one, first come first
	// served, for up to wait (but not past DefaultMaxElapsed after its
	// request began), instead of giving up at once. 0: no waiting.
	wait time.Duration
	// grpc is gRPC's A6 throttling: every failed attempt takes a token,
	// every success adds ratio, and retries are made only while more than
	// half the bucket is left; retries themselves cost nothing.
	grpc bool
	// window counts successes and retries over the last window, a retry
	// allowed while retries+1 ≤ ratio × successes, plus burst retries
	// before the first success (retryhttp's model, with other windows).
	window time.Duration
	// sre is the client-side throttling rule of Google's SRE book applied
	// to retries: over the last 2 min, a retry is refused with probability
	// max(0, (requests − k·accepts)/(requests + 1)), k = 1/(1 − ratio)...
	// here k = 1 + ratio, so that retries stay near ratio × accepts.
	sre bool
}

func (d budgetDesign) label() string {
	if d.real {
		return d.name + " (retryhttp's code)"
	}
	return d.name + " (model)"
}

// budgetModel is one process's budget under a design, in a simulation.
type budgetModel struct {
	d       budgetDesign
	s       *sim
	oks     []time.Duration // window, sre: times of recent successes
	tries   []time.Duration // window: of recent retries; sre: of recent requests (attempts)
	seen    bool            // window: a success was counted
	rng     uint64
	tokens  float64
	last    time.Duration // of the last minRate accrual
	waiters []*simCall
	poked   bool // a minRate grant is scheduled
}

func newBudgetModel(d budgetDesign, s *sim) *budgetModel {
	return &budgetModel{d: d, s: s, tokens: d.burst}
}

func (m *budgetModel) accrue() {
	if m.d.minRate > 0 {
		m.tokens = min(m.d.burst, m.tokens+m.d.minRate*(m.s.now-m.last).Seconds())
	}
	m.last = m.s.now
}

func (m *budgetModel) add(x float64) {
	m.accrue()
	m.tokens = max(0, min(m.d.burst, m.tokens+x))
	m.grant()
}

// trim drops the times older than the design's window.
func (m *budgetModel) trim() {
	w := m.d.window
	if m.d.sre {
		w = 2 * time.Minute
	}
	for len(m.oks) > 0 && m.oks[0] <= m.s.now-w {
		m.oks = m.oks[1:]
	}
	for len(m.tries) > 0 && m.tries[0] <= m.s.now-w {
		m.tries = m.tries[1:]
	}
}

func (m *budgetModel) allowed() bool {
	if m.d.window > 0 {
		m.trim()
		if float64(len(m.tries)+1) <= m.d.ratio*float64(len(m.oks))+1e-9 {
			return true
		}
		return !m.seen && m.tokens >= 1
	}
	if m.d.sre {
		m.trim()
		reqs, k := float64(len(m.tries)), 1+m.d.ratio
		p := max(0, (reqs-k*float64(len(m.oks)))/(reqs+1))
		m.rng = m.rng*6364136223846793005 + 1442695040888963407
		return float64(m.rng>>11)/(1<<53) >= p
	}
	if m.d.grpc {
		return m.tokens > m.d.burst/2
	}
	return m.tokens >= 1
}

func (m *budgetModel) take() {
	if m.d.window > 0 {
		if float64(len(m.tries)+1) <= m.d.ratio*float64(len(m.oks))+1e-9 {
			m.tries = append(m.tries, m.s.now)
		} else {
			m.tokens--
		}
		return
	}
	if m.d.sre {
		return
	}
	if !m.d.grpc {
		m.tokens--
	}
}

// request is called for every request's first attempt.
func (m *budgetModel) request() {
	if !m.d.depositOnSuccess && !m.d.grpc && m.d.window == 0 && !m.d.sre {
		m.add(m.d.ratio)
	}
}

// outcome is called after every attempt.
func (m *budgetModel) outcome(c *simCall, retry, ok bool) {
	switch {
	case m.d.window > 0:
		if ok {
			m.oks = append(m.oks, m.s.now)
			m.seen = true
		}
		return
	case m.d.sre:
		m.tries = append(m.tries, m.s.now)
		if ok {
			m.oks = append(m.oks, m.s.now)
		}
		return
	case m.d.grpc && ok:
		m.add(m.d.ratio)
	case m.d.grpc:
		m.add(-1)
	case ok:
		x := 0.0
		if m.d.depositOnSuccess {
			x += m.d.ratio
		}
		if retry && m.d.refund {
			x++
		}
		if x > 0 {
			m.add(x)
		}
	}
}

// acquire takes a token for a retry of c, waiting for one if the design
// says so, and reports whether the retry may be made.
func (m *budgetModel) acquire(c *simCall) bool {
	m.accrue()
	if len(m.waiters) == 0 && m.allowed() {
		m.take()
		return true
	}
	if m.d.wait <= 0 {
		return false
	}
	deadline := min(c.start+retryhttp.DefaultMaxElapsed, m.s.now+m.d.wait)
	if m.s.now >= deadline {
		return false
	}
	c.waiting, c.granted = true, false
	m.waiters = append(m.waiters, c)
	m.s.after(deadline, func() {
		if c.waiting {
			c.waiting = false
			m.waiters = slices.DeleteFunc(m.waiters, func(w *simCall) bool { return w == c })
			c.resume()
		}
	})
	m.poke()
	c.block()
	return c.granted
}

// grant hands tokens to waiting retries, first come first served.
func (m *budgetModel) grant() {
	for len(m.waiters) > 0 && m.allowed() {
		m.take()
		w := m.waiters[0]
		m.waiters = m.waiters[1:]
		w.waiting, w.granted = false, true
		m.s.after(m.s.now, w.resume)
	}
	m.poke()
}

// poke schedules a grant for when minRate next makes a token.
func (m *budgetModel) poke() {
	if m.d.minRate <= 0 || len(m.waiters) == 0 || m.poked {
		return
	}
	need := max(0, 1-m.tokens)
	if m.d.grpc {
		need = max(0, m.d.burst/2-m.tokens) + 1e-6
	}
	m.poked = true
	m.s.after(m.s.now+time.Duration(need/m.d.minRate*float64(time.Second))+time.Microsecond, func() {
		m.poked = false
		m.accrue()
		m.grant()
	})
}
