package retryhttp

import (
	"math"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Quota holds: a Transport does not send what a server has said it will
// refuse. When a response says that its destination's quota is spent and
// when it resets (an X-RateLimit-Remaining, X-Rate-Limit-Remaining or
// RateLimit-Remaining of 0, or an IETF RateLimit policy with r=0, together
// with the reset RateLimitWait reads; or a 429 or 403 with Retry-After, or a
// 503 with Retry-After and rate-limit fields), the Transport remembers the
// reset for that destination's limit: the resource or bucket the response
// names (X-RateLimit-Resource, X-RateLimit-Bucket, a RateLimit-Policy name),
// else the request's Policy.LimitKey, else the destination itself (see
// limitscope.go). A request that draws on that limit (of a route answered
// as drawing on that resource, or with that key, or any other request to
// the destination) before the reset is held until the reset plus the
// jitter of server-named waits, when that fits its limits, and else sent
// as usual. Nothing has been sent, so any method is held, a POST included.
//
// At the reset the hold lets through no more requests than the quota the
// server announced for the fresh window (X-RateLimit-Limit,
// X-Rate-Limit-Limit, RateLimit-Limit, or the q of RateLimit-Policy), or one
// request when it announced none. The answers to those requests then say how
// much quota is left (their Remaining); the hold lets through that many,
// less those still in flight, and holds the rest until the next answer or
// the next reset. When a server announces no quota at all (a 429 or 403 with
// only Retry-After), each success after the reset lets two more requests
// through, as a TCP slow start does, so that a recovering server is not met
// by every held request at once. A spent quota holds everything until the
// reset: the quota is the client's, and the answers to requests sent before
// it was spent say nothing of it.
//
// A 503 with only Retry-After holds nothing: it is a server shedding load,
// not a quota, and its named wait says when that request may come back, not
// that others may not be sent. Its own retry waits the named time and is
// charged to the Budget.
//
// A window that served fewer requests than announced (a quota shared with
// other clients, or announced wrong) while the client asked for more at
// once makes the next reset let through no more than that; a window that
// served all the client asked for says only how little it asked, and
// changes nothing. A window that served all its announced quota, with
// answers that say nothing of what is left, is taken as spent until a reset
// as far off as the last one, rather than found spent by a refusal; so is
// one that served all it learnt while the client asks for more at once, and
// never one that served a client asking for less.
//
// A hold expires on its own: once its reset has passed by as long again as
// the server asked to wait (at least a second), and no request waits on it,
// it is forgotten; once a destination's last hold is, its requests take the
// happy path again, which reads no more than a few header fields of each
// response. Requests
// it let through may still be in flight (under steady traffic some always
// are): their answers count only as news, and make a new hold only when
// they say the quota is spent.

// maxHolds bounds the holds a Transport keeps at once, over all its
// destinations and their scopes (see limitscope.go): it is the limit of
// the holds' table, which evicts as every destTable does (see
// destinations.go), the hold least worth keeping (holdWorth) first.
const maxHolds = maxDestinations

// holds are a Transport's quota holds, in two destTables: places, a place
// per destination that has a hold, which a request looks its destination
// up in without a lock or an allocation, finding nothing unless a server
// said a quota of it is spent; and table, the holds themselves, one per
// destination and scope (limitScope.extra), at most maxHolds. A place
// lives as long as its destination has a hold in table. The zero value
// holds nothing.
type holds struct {
	places destTable[place]
	table  destTable[hold]

	// mu is held to add or remove an entry of either table, so that they
	// agree: every place has a hold, and every hold its place.
	mu       sync.Mutex
	emptied  []*place // places that lost their last hold, to remove; under mu
	orphaned []*place // places that left places, whose holds are to remove; under mu
}

// hold is what a Transport knows of one quota of a destination.
type hold struct {
	place *place     // its destination's; under holds.mu
	scope limitScope // what it is the quota of, within its destination

	mu        sync.Mutex
	reset     time.Time     // on the Clock: when the spent quota resets; zero while a window is open
	keepUntil time.Time     // the hold expires, once idle, from then on
	keepNanos atomic.Int64  // keepUntil in Unix nanoseconds (0 while zero), for holdWorth
	header    string        // the field that said the quota is spent
	lastWait  time.Duration // from the latest spent answer until its reset
	fresh     int           // requests to let through at the reset: the announced quota, or less, or 1
	quota     int           // the quota the server announced for a window; 0: none
	left      int           // requests the open window may still let through
	bounded   bool          // left comes from the server's counts, not from the slow start
	lowest    int           // the lowest remaining count answered since the window opened; -1: none
	inflight  int           // requests let through by the hold and not yet answered
	opened    bool          // a window opened since the quota was last spent
	served    int           // successes answered since the window opened
	demand    int           // the most requests in flight or waiting at once since the window opened
	waiters   int           // requests waiting on the hold
	answering int           // of the waiters, those waiting for an answer (changed), not on the Clock
	changed   chan struct{}
	gone      bool // taken out of the table; set under holds.mu
}

// find returns the place of u's destination, or nil: on the happy path an
// atomic load and a length check.
func (hs *holds) find(u *url.URL) *place {
	return hs.places.find(u, "")
}

// hold returns the hold of scope s of u's destination, or nil.
func (hs *holds) hold(u *url.URL, s limitScope) *hold {
	return hs.table.find(u, s.extra())
}

// findOrAdd returns the hold of u's destination itself, adding one when
// there is none.
func (hs *holds) findOrAdd(u *url.URL) *hold {
	return hs.findOrAddIn(u, limitScope{})
}

// findOrAddIn returns the hold of scope s of u's destination, adding one,
// and the destination's place, when there is none; when the Transport
// keeps maxHolds already, the table evicts the hold least worth keeping.
func (hs *holds) findOrAddIn(u *url.URL, s limitScope) *hold {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.table.limit == 0 {
		hs.table.limit = maxHolds
		hs.table.hooks = destHooks[hold]{worth: holdWorth, evicted: hs.evicted}
		// Every place has a hold, but for one that lost its last to the
		// hold being added, which is then the one evicted, if need be.
		hs.places.limit = maxHolds
		hs.places.hooks = destHooks[place]{worth: placeWorth, evicted: hs.placeEvicted}
	}
	added := false
	h := hs.table.findOrAddWith(u, s.extra(), 0, func(h *hold) {
		h.scope, h.lowest, added = s, -1, true
	})
	if added {
		p := hs.places.findOrAddWith(u, "", 0, func(p *place) {
			p.table, p.dest = &hs.table, &url.URL{Scheme: u.Scheme, Host: u.Host}
		})
		h.place = p
		p.count++
	}
	hs.tidy()
	return h
}

// holdWorth scores a hold for eviction: the one whose keep time is the
// earliest is worth least, which is one that has expired, when one has,
// or else the one that would expire first. It reads one word, as it is
// asked of every hold while a new one waits.
func holdWorth(h *hold, _ int64) (int64, int64) {
	return h.keepNanos.Load(), 0
}

// placeWorth scores a place for eviction: one that has lost its last hold
// is worth nothing.
func placeWorth(p *place, _ int64) (int64, int64) {
	return int64(p.count), 0
}

// evicted retires a hold the table evicted, so that the requests waiting on
// it, or holding it, can tell. hs.mu is held.
func (hs *holds) evicted(h *hold, _ uint64) {
	h.retire()
	hs.unplace(h)
}

// placeEvicted is told of a place that left places: one with holds left
// only when another destination took its slot, their hashes colliding, and
// its holds leave with it. hs.mu is held.
func (hs *holds) placeEvicted(p *place, _ uint64) {
	if p.count > 0 {
		hs.orphaned = append(hs.orphaned, p)
	}
}

// unplace counts h, which left the table, out of its place. hs.mu is held.
func (hs *holds) unplace(h *hold) {
	h.place.count--
	if h.place.count == 0 {
		hs.emptied = append(hs.emptied, h.place)
	}
}

// tidy brings the tables back in step after entries left one of them: a
// place leaves with its last hold, and the holds of a place that left go
// with it. hs.mu is held.
func (hs *holds) tidy() {
	for _, p := range hs.orphaned {
		for h := range hs.table.all() {
			if h.place == p {
				hs.table.removeIf(h, func(h *hold) bool { h.retire(); return true })
			}
		}
	}
	for _, p := range hs.emptied {
		if hs.places.find(p.dest, "") == p { // not evicted already
			hs.places.removeIf(p, func(p *place) bool { return p.count == 0 })
		}
	}
	hs.orphaned, hs.emptied = nil, nil
}

// dropIfExpired forgets h once it has expired, so that the requests of its
// scope take the happy path again (and those of its destination, when it
// was the last hold there).
func (hs *holds) dropIfExpired(h *hold, now time.Time) {
	h.mu.Lock()
	expired := h.expired(now)
	h.mu.Unlock()
	if !expired {
		return
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	dropped := false
	hs.table.removeIf(h, func(h *hold) bool {
		dropped = h.retireIfExpired(now)
		return dropped
	})
	if dropped {
		hs.unplace(h)
		hs.tidy()
	}
}

// expired reports whether h may be forgotten: its window is open, nobody
// waits on it, and it has been kept long enough for the requests told of
// its reset by a retry to come back. Requests it let through may still be
// in flight: under steady traffic some always are. Their answers go to
// the hold that new requests find, if any, or make one when they say the
// quota is spent (see observeQuota). h.mu is held.
func (h *hold) expired(now time.Time) bool {
	return !h.gone && h.waiters == 0 && !h.spentAt(now) && !now.Before(h.keepUntil)
}

func (h *hold) retireIfExpired(now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.expired(now) {
		return false
	}
	h.gone = true
	h.broadcast()
	return true
}

func (h *hold) retire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gone = true
	h.broadcast()
}

// spentAt reports whether the quota is spent at now. h.mu is held.
func (h *hold) spentAt(now time.Time) bool {
	return !h.reset.IsZero() && now.Before(h.reset)
}

// broadcast wakes the requests waiting for an answer. h.mu is held.
func (h *hold) broadcast() {
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
		h.answering = 0 // woken, they wait no more, although they have yet to run
	}
}

// open starts the window that follows a reset. h.mu is held.
func (h *hold) open() {
	h.reset = time.Time{}
	h.left, h.bounded = h.fresh, h.quota > 0
	h.lowest = -1
	h.opened, h.served = true, 0
	h.demand = h.inflight + h.waiters // those that waited for the reset ask for the new window
}

// asked records how many requests are in flight or waiting on h at once,
// the client's demand, after one more was let through or began to wait.
// h.mu is held.
func (h *hold) asked() {
	h.demand = max(h.demand, h.inflight+h.waiters)
}

// spend records that the quota is spent until now+wait, and the quota
// announced for the fresh window, if any (limit > 0). h.mu is held.
func (h *hold) spend(now time.Time, wait time.Duration, header string, limit int) {
	reset := now.Add(wait)
	if reset.After(h.reset) {
		h.reset = reset
	}
	h.lastWait = wait
	if keep := reset.Add(max(wait, time.Second)); keep.After(h.keepUntil) {
		h.keepUntil = keep
		h.keepNanos.Store(keep.UnixNano())
	}
	h.header = header
	switch {
	case limit > 0:
		h.fresh, h.quota = limit, limit
	case h.quota == 0:
		h.fresh = 1
	}
	// What the window that just ended served is what the server really
	// grants this Transport, when it is less than the announced quota (a
	// quota shared with other clients, or announced wrong) and the client
	// asked for more at once: a window that served all the client asked
	// for tells its demand, not the server's quota.
	if h.opened && h.served > 0 && h.served < h.fresh && h.demand > h.served {
		h.fresh = h.served
	}
	h.left, h.bounded, h.lowest = 0, true, -1
	h.opened = false
	h.broadcast()
}

// answered records what an answer said of a window that is not spent: the
// quota remaining (or -1 when it said nothing), and whether it was a
// success. h.mu is held.
func (h *hold) answered(now time.Time, remaining int, success bool) {
	if h.spentAt(now) {
		return // an answer from before the quota was spent
	}
	if !h.reset.IsZero() {
		h.open()
	}
	switch {
	case remaining >= 0:
		// Answers may arrive out of order: the lowest count is the latest,
		// unless nothing else is in flight. Requests in flight may have
		// been counted already; counting them again errs on the safe side.
		if h.lowest < 0 || remaining < h.lowest || h.inflight == 0 {
			h.lowest = remaining
		}
		h.left, h.bounded = max(0, h.lowest-h.inflight), true
	case success && !h.bounded:
		h.left += 2 // slow start: the server named no quota
	case success && h.quota > 0 && h.lowest < 0 && h.lastWait > 0 &&
		(h.served >= h.quota || h.served >= h.fresh && h.demand > h.served):
		// The window served all the quota the server announced, or all
		// it learnt while the client asks for more at once, and its
		// answers said nothing of what is left: the quota is spent,
		// though no answer says so. Rather than find out with a refusal,
		// hold until a reset as far off as the last one was. A client
		// that asks for no more than it was served is not held for a
		// learnt quota: that may be its own low demand.
		h.spend(now, h.lastWait, h.header, 0)
		return
	}
	h.broadcast()
}

// quotaNews is what a response says about its destination's quota.
type quotaNews struct {
	spent     bool          // the quota is spent until wait from now
	wait      time.Duration // until the reset
	header    string        // the field that said so
	resource  string        // the resource or bucket it names (see resourceName), or ""
	limit     int           // the quota of a fresh window; 0 when not announced
	remaining int           // the quota left, or -1 when not said
}

// mayTellQuota reports whether resp may carry news of its quota: a 429 or
// 503, or a remaining count of zero, or an IETF RateLimit field. It reads a
// few header fields by their canonical keys and allocates nothing, for
// every response of the happy path.
func mayTellQuota(resp *http.Response) bool {
	if resp == nil {
		return false
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusForbidden:
		return true
	}
	h := resp.Header
	if len(h) == 0 {
		return false
	}
	for _, key := range [...]string{keyXRateLimitRemaining, keyXRateDashLimitRem, keyRateLimitRemaining} {
		if v := h[key]; len(v) > 0 && len(v[0]) > 0 && (v[0][0] == '0' || v[0][0] == ' ' || v[0][0] == '\t') {
			return true
		}
	}
	return len(h[rateLimitFields[0].key]) > 0
}

// readQuota reads what resp says about its destination's quota.
func readQuota(resp *http.Response, now time.Time) quotaNews {
	news := quotaNews{remaining: -1}
	if resp == nil {
		return news
	}
	h := canonicalRateLimitHeader(resp.Header)
	news.limit = announcedQuota(h)
	news.resource = resourceName(h)
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusServiceUnavailable, http.StatusForbidden:
		// A 403 with Retry-After is a rate-limit refusal (GitHub's
		// secondary limits), held like a 429; any other 403 says nothing
		// of a quota.
		if d, ok := RetryAfter(resp, now); ok {
			if resp.StatusCode == http.StatusServiceUnavailable && news.limit == 0 && !tellsRemaining(h) {
				// A server shedding load, not a quota: its named wait
				// says when this request may come back, not that others
				// may not be sent. Holding them, and letting them out at
				// the reset, keeps a queue full of work whose callers
				// have gone; the retry of this one waits as told and is
				// charged to the Budget.
				return news
			}
			news.spent, news.wait, news.header = true, d, "Retry-After"
			return news
		}
	}
	for _, key := range [...]string{keyXRateLimitRemaining, keyXRateDashLimitRem, keyRateLimitRemaining} {
		if n, ok := wholeCount(h[key]); ok {
			news.remaining = n
			break
		}
	}
	if values := h[rateLimitFields[0].key]; len(values) > 0 {
		if items, ok := parseRateLimitField(values); ok && items.exhausted {
			news.remaining = 0
		}
	}
	if news.remaining == 0 {
		if d, header, ok := rateLimitWait(resp, now); ok {
			news.spent, news.wait, news.header = true, d, header
		}
	}
	return news
}

// tellsRemaining reports whether h has a field that counts the quota left.
func tellsRemaining(h http.Header) bool {
	for _, key := range [...]string{keyXRateLimitRemaining, keyXRateDashLimitRem, keyRateLimitRemaining, rateLimitFields[0].key} {
		if len(h[key]) > 0 {
			return true
		}
	}
	return false
}

// wholeCount reads a remaining-quota field as a whole number: a fraction is
// rounded down, since a request takes a whole unit.
func wholeCount(values []string) (int, bool) {
	v, ok := singleValue(values)
	if !ok {
		return 0, false
	}
	n, ok := parseDecimalSeconds(v)
	if !ok {
		return 0, false
	}
	if n.saturated || n.sec > math.MaxInt32 {
		return math.MaxInt32, true
	}
	return int(n.sec), true
}

// announcedQuota reads the quota a server announces for a fresh window:
// X-RateLimit-Limit, X-Rate-Limit-Limit, RateLimit-Limit, or the q of the
// first policy of an IETF RateLimit-Policy field. It returns 0 when none is
// given.
func announcedQuota(h http.Header) int {
	for _, key := range [...]string{"X-Ratelimit-Limit", "X-Rate-Limit-Limit", "Ratelimit-Limit"} {
		if v, ok := singleValue(h[key]); ok {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return n
			}
		}
	}
	if v, ok := singleValue(h["Ratelimit-Policy"]); ok {
		return policyQuota(v)
	}
	return 0
}

// policyQuota returns the q parameter of the first policy of a
// RateLimit-Policy field, such as `"default";q=100;w=60`, or 0.
func policyQuota(v string) int {
	for i := 0; i+2 < len(v); i++ {
		if v[i] == ',' {
			return 0
		}
		if v[i] == ';' && v[i+1] == 'q' && v[i+2] == '=' {
			j := i + 3
			n := 0
			for ; j < len(v) && isDigit(v[j]) && n < math.MaxInt32/10; j++ {
				n = n*10 + int(v[j]-'0')
			}
			if j == i+3 {
				return 0
			}
			return n
		}
	}
	return 0
}

// HoldReason says why a request was held.
type HoldReason int

const (
	// HoldReset: the destination's quota was spent, and the request waited
	// for its reset.
	HoldReset HoldReason = iota + 1
	// HoldQuota: the requests the server's quota allows had been let
	// through, and the request waited for an answer that says how much is
	// left, or that the quota is spent until a new reset.
	HoldQuota
)

// String returns "reset" or "quota".
func (r HoldReason) String() string {
	switch r {
	case HoldReset:
		return "reset"
	case HoldQuota:
		return "quota"
	}
	return "HoldReason(" + strconv.Itoa(int(r)) + ")"
}

// HoldEvent describes a request that a quota hold kept from being sent for a
// while; it is what Policy.OnHold receives, once per held attempt, when the
// hold ends.
type HoldEvent struct {
	// Request is the caller's request. It must not be modified.
	Request *http.Request
	// Attempt is the number of the attempt that was held: 1 for a new
	// request, more for a retry.
	Attempt int
	// Held is how long the request was held: on the Policy's Clock while
	// it waited for a reset, in real time while it waited for an answer.
	Held time.Duration
	// Reason is why it was held last: HoldReset or HoldQuota.
	Reason HoldReason
	// Header names the header field of the response that said the quota
	// was spent, such as "X-RateLimit-Reset" or "Retry-After" (the field
	// RateLimitWait or RetryAfter read the reset from).
	Header string
	// Err is nil when the request is sent next, the context's error when
	// the caller gave up during the hold, or the limit that the hold would
	// have passed (ErrMaxElapsed, ErrDeadline, ErrRetryAfterTooLong): the
	// attempt, a first one or a retry, is then sent as usual.
	Err error
}

// observe records what resp, the answer to a request to u, says about u's
// quotas: observeRequest with the request resp was the answer to, if known.
// It is safe to call from any goroutine: a race's loser calls it from its
// own (see race.lost).
func (hs *holds) observe(u *url.URL, clock Clock, limitKey func(*http.Request) string, resp *http.Response, success bool, admitted, pastHold *hold, pastReset time.Time) (pacedUntil time.Time) {
	var req *http.Request
	if resp != nil {
		req = resp.Request
	}
	return hs.observeRequest(req, u, clock, limitKey, resp, success, admitted, pastHold, pastReset)
}

// observeRequest records what resp, the answer to req, a request to u, says
// about u's quotas. admitted is the hold that let the request through, to
// be told that it ended, or nil; pastHold the hold, spent until pastReset,
// that it was sent past, or nil. req may be nil when unknown: its answer is
// then news for the resource it names, or for the destination.
//
// The news goes to the hold of the scope the answer names (see
// limitscope.go), or else to the hold that let the request through, or
// else to the hold of the request's scope. That scope is worked out only
// for a destination that has a hold, or is about to have one.
//
// When resp spent a hold that knows the quota the server announced, until
// a reset at least ScheduledRetryMin ahead, it returns that reset, and
// otherwise the zero time: the retry of such a refusal is paced by the
// hold, which lets through no more than that quota, and takes no token from
// the Budget when the hold will be waited for (see retrier.pacedByHold). It
// is read as the answer arrives, so that the time a retry takes to be
// decided does not change it.
func (hs *holds) observeRequest(req *http.Request, u *url.URL, clock Clock, limitKey func(*http.Request) string, resp *http.Response, success bool, admitted, pastHold *hold, pastReset time.Time) (pacedUntil time.Time) {
	if admitted == nil && !mayTellQuota(resp) && hs.find(u) == nil {
		return time.Time{}
	}
	now := clock.Now()
	news := readQuota(resp, now)
	pl := hs.find(u)
	if pl == nil && !news.spent {
		if admitted != nil {
			hs.ended(admitted, now)
		}
		return time.Time{}
	}
	scope := limitScope{kind: scopeResource, name: news.resource}
	switch {
	case news.resource != "":
	case admitted != nil:
		scope = admitted.scope
	case pl != nil && req != nil:
		scope = pl.requestScope(req, limitKey)
	default:
		scope = keyScope(req, limitKey)
	}
	h := pl.hold(scope)
	if h == nil && news.spent {
		h = hs.findOrAddIn(u, scope)
	}
	if news.resource != "" && req != nil {
		if pl = hs.find(u); pl != nil {
			pl.learn(req, news.resource)
		}
	}
	own := admitted != nil && admitted == h
	if admitted != nil && !own {
		// Let through by another scope's hold (its route was not known
		// to draw on this one): that hold hears only that it ended.
		hs.ended(admitted, now)
	}
	if h == nil {
		return time.Time{}
	}
	h.mu.Lock()
	if own {
		h.inflight--
	}
	if h.gone {
		// Forgotten while the attempt was in flight: what its answer says
		// goes to the hold that new requests find, and makes one only when
		// it says the quota is spent, as for a destination never held.
		h.mu.Unlock()
		if h = hs.hold(u, scope); h == nil {
			if !news.spent {
				return time.Time{}
			}
			h = hs.findOrAddIn(u, scope)
		}
		h.mu.Lock()
	}
	if success && !news.spent && h == pastHold && h.reset.Equal(pastReset) && h.spentAt(now) {
		// Sent after the quota was spent, because the reset was too far
		// off to wait for, and served: the server reset early, and the
		// window is open again (answered opens it).
		h.reset = now
	}
	if success && !h.spentAt(now) {
		h.served++
	}
	switch {
	case news.spent:
		h.spend(now, news.wait, news.header, news.limit)
		if h.quota > 0 && news.wait >= ScheduledRetryMin {
			pacedUntil = h.reset
		}
	case resp != nil:
		h.answered(now, news.remaining, success)
	default:
		h.broadcast() // a request let through ended without an answer
	}
	h.mu.Unlock()
	hs.dropIfExpired(h, now)
	return pacedUntil
}

// ended tells h that a request it let through ended, with an answer that
// was news for another hold, or none.
func (hs *holds) ended(h *hold, now time.Time) {
	h.mu.Lock()
	h.inflight--
	h.broadcast()
	h.mu.Unlock()
	hs.dropIfExpired(h, now)
}
