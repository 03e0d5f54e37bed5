package retryhttp

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// ErrThrottled is the Reason of a request that a Policy's Throttle rejected
// locally. A new request rejected is not sent at all: errors.Is(err,
// ErrThrottled) holds for the error RoundTrip returns, a *GiveUpError with
// Attempts 0 whose message names the accept ratio that led to the
// rejection. A retry rejected is not made, and the retries end with this
// Reason.
var ErrThrottled = errors.New("retryhttp: throttled locally")

// Throttle rejects locally, before sending, a share of the requests to a
// destination that has lately accepted too few of them: the client-side
// adaptive throttling of Google's SRE book ("Handling Overload"), which
// Envoy's admission_control filter also applies. An overloaded server then
// sees a load near what it can accept, not all that is offered, and the
// retries of a whole fleet do not keep it overloaded.
//
// For each destination (a URL's scheme, host and port, as NewHostBudget
// has them), a Throttle counts over a sliding window of the last `window`:
//
//   - requests: the attempts sent, first attempts and retries alike, each
//     counted when its outcome is known: when the server answered, or the
//     attempt failed without the caller's doing. An attempt cut short by
//     the caller (its context done, its Cancel channel closed) or by a
//     hedge race that another copy won says nothing of the server, and is
//     not counted at all;
//   - accepts: the attempts answered with a response that the Policy does
//     not retry (a 200, a 404: anything Policy.Retryable says is final).
//
// A new request is rejected with probability
//
//	p = max(0, (requests − K·accepts) / (requests + 1))
//
// read from the counts before it, and capped at MaxThrottleRejection, so
// that at least one request in ten is still sent to a destination that
// accepts nothing, and its recovery is noticed. So:
//
//   - a healthy destination, which accepts at least 1/K of its attempts,
//     sees no rejection at all;
//   - as the share accepted falls below 1/K, rejections rise, and the
//     load that reaches the server tends to K times what it accepts;
//   - as accepts come back, rejections fall, within one window.
//
// Unlike the SRE book, the requests a Throttle rejects are not counted: they
// never reach the server, so they say nothing of it, and counting them makes
// rejections feed on themselves, so that rejections outlive an overload by
// several windows. Counted this way, the load that reaches an overloaded
// server is about √(K·accepted·offered) rather than K·accepted, and
// rejections fade within one window of the server's recovery. The window is
// the memory of an overload: the bench's metastable scenario recovered
// soonest with a window of a few seconds (bench/results: "Adaptive
// throttling").
//
// Retries are requests too: each is counted, and each is rejected with the
// same probability, after the Policy's other checks and before the Budget
// is asked for a token. A rejected retry ends the retries as any give-up
// does (Reason ErrThrottled): the last response is returned as it came, or
// the last error in a *GiveUpError. Counts are kept in ten slots of window/10, so a
// count leaves the window up to a tenth of it late. Time is read from the
// Policy's Clock.
//
// A Throttle is safe for concurrent use, and may be shared by several
// Transports. It keeps at most MaxThrottleDestinations destinations; when
// more are in use, the one used least recently is forgotten, and starts
// afresh when it is used again. The zero Throttle is invalid
// (Policy.Validate reports it); use NewThrottle.
type Throttle struct {
	k      float64
	window time.Duration
	slot   time.Duration
	err    error // set by NewThrottle for invalid arguments
	made   bool

	// random draws from [0, 1) for each decision; tests script it.
	random func() float64

	dests destTable[throttleDest]
	uses  atomic.Int64 // counts lookups, to find the least recently used
}

// MaxThrottleRejection is the highest share of requests a Throttle rejects:
// at least 1 − MaxThrottleRejection of them are sent, as probes.
const MaxThrottleRejection = 0.9

// MaxThrottleDestinations is the number of destinations a Throttle keeps
// counts for at most.
const MaxThrottleDestinations = maxDestinations

// throttleSlots is the number of slots a window is counted in.
const throttleSlots = 10

// NewThrottle returns a Throttle that rejects requests to a destination with
// the probability max(0, (requests − k·accepts) / (requests + 1)), counted
// over the last window (see Throttle). The SRE book advises k = 2; a smaller
// k rejects sooner, a larger one later. The window is how long an overload
// is remembered: a few seconds to a minute, shorter for a quicker recovery,
// longer for a process that sends few requests.
//
// A k below 1 (which would reject requests a healthy server accepts), NaN
// or infinite, or a window that is not positive, makes an invalid Throttle:
// a Transport using it returns an error naming the problem instead of
// sending anything (see Policy.Validate).
func NewThrottle(k float64, window time.Duration) *Throttle {
	t := &Throttle{k: k, window: window, made: true, random: rand.Float64}
	t.dests.limit = MaxThrottleDestinations
	t.dests.hooks.worth = func(d *throttleDest, _ int64) (int64, int64) { return d.lastUsed.Load(), 0 }
	switch {
	case math.IsNaN(k) || math.IsInf(k, 0) || k < 1:
		t.err = fmt.Errorf("k %v must be a finite number of at least 1: 2 is the usual choice", k)
	case window <= 0:
		t.err = fmt.Errorf("window %v must be positive: a couple of minutes is the usual choice", window)
	default:
		t.slot = max(window/throttleSlots, 1)
	}
	return t
}

// validate reports why t cannot be used.
func (t *Throttle) validate() error {
	if !t.made {
		return errors.New("the zero Throttle has no K and no window: use NewThrottle(2, 2*time.Minute)")
	}
	return t.err
}

// throttleDest counts the requests and accepts of one destination.
type throttleDest struct {
	mu       sync.Mutex
	slots    [throttleSlots]throttleSlot
	lastUsed atomic.Int64
}

type throttleSlot struct {
	epoch             int64 // the slot's number since the Unix epoch
	requests, accepts int64
}

// counts returns the requests and accepts of the window that ends in slot
// epoch now. d.mu is held.
func (d *throttleDest) counts(now int64) (requests, accepts int64) {
	for i := range d.slots {
		if s := &d.slots[i]; s.epoch > now-throttleSlots && s.epoch <= now {
			requests += s.requests
			accepts += s.accepts
		}
	}
	return requests, accepts
}

// add counts a request, and an accept, in slot epoch now. d.mu is held.
func (d *throttleDest) add(now, requests, accepts int64) {
	// A time before 1970 has a negative slot number, whose remainder is
	// negative too.
	s := &d.slots[(now%throttleSlots+throttleSlots)%throttleSlots]
	if s.epoch != now {
		*s = throttleSlot{epoch: now}
	}
	s.requests += requests
	s.accepts += accepts
}

// epoch returns the slot number of now.
func (t *Throttle) epoch(now time.Time) int64 {
	return now.UnixNano() / int64(t.slot)
}

// probability returns the rejection probability from counts.
func (t *Throttle) probability(requests, accepts int64) float64 {
	p := (float64(requests) - t.k*float64(accepts)) / float64(requests+1)
	return min(max(p, 0), MaxThrottleRejection)
}

// admit decides whether a request to u may be sent at now, and returns the
// error of a rejection.
func (t *Throttle) admit(u *url.URL, now time.Time) error {
	d := t.findOrAdd(u)
	e := t.epoch(now)
	d.mu.Lock()
	requests, accepts := d.counts(e)
	p := t.probability(requests, accepts)
	rejected := p > 0 && t.random() < p
	d.mu.Unlock()
	if !rejected {
		return nil
	}
	ratio := 0.0
	if requests > 0 {
		ratio = float64(accepts) / float64(requests)
	}
	return fmt.Errorf("%w: %s accepted %d of the last %d requests within %v (accept ratio %.2f, below 1/K = %.2f), so %.0f%% of new requests are rejected",
		ErrThrottled, canonicalDestination(u), accepts, requests, t.window, ratio, 1/t.k, 100*p)
}

// record counts the outcome of an attempt sent to u, first or retry, as a
// request, and as an accept when accepted. Attempts count when they end, so
// that those still in flight, neither accepted nor refused yet, do not make
// a healthy destination look unhealthy; those that the caller or a race
// cancelled are not recorded at all.
func (t *Throttle) record(u *url.URL, now time.Time, accepted bool) {
	d := t.findOrAdd(u)
	var accepts int64
	if accepted {
		accepts = 1
	}
	e := t.epoch(now)
	d.mu.Lock()
	d.add(e, 1, accepts)
	d.mu.Unlock()
}

// Probability reports the probability with which t would reject a new
// request to the destination of rawURL (such as "https://api.example.com")
// at now, from its counts; 0 for a destination it has no counts for, and
// NaN for a URL without a scheme and a host.
func (t *Throttle) Probability(rawURL string, now time.Time) float64 {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme == "" || u.Host == "" || t.slot == 0 {
		return math.NaN()
	}
	d := t.find(u)
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return t.probability(d.counts(t.epoch(now)))
}

// find returns the counts of u's destination, or nil, and marks them used.
func (t *Throttle) find(u *url.URL) *throttleDest {
	d := t.dests.find(u, "")
	if d != nil {
		d.lastUsed.Store(t.uses.Add(1))
	}
	return d
}

// findOrAdd returns the counts of u's destination, adding them when there
// are none (the table then forgets the least recently used destination
// when MaxThrottleDestinations are kept already), and marks them used.
func (t *Throttle) findOrAdd(u *url.URL) *throttleDest {
	d := t.dests.findOrAdd(u, "", 0)
	d.lastUsed.Store(t.uses.Add(1))
	return d
}

// destinations reports how many destinations t keeps counts for.
func (t *Throttle) destinations() int { return t.dests.len() }
