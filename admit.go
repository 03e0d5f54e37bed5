package retryhttp

import (
	"context"
	"time"
)

// Admission: before an attempt is sent, what is known of its destination
// may keep it back. The Throttle rejects a share of the requests to a
// destination that lately accepted too few; a quota hold (see quota.go)
// keeps an attempt until the reset its server named, or until an answer
// says how much quota is left. Nothing has been sent yet, so any request
// may be held, a POST included. A retry's Throttle check comes earlier,
// in decide, so that a rejected retry neither takes a token nor waits; a
// hedge is not sent where either would keep it back (see hedgedSend).

// admit lets attempt n of r.req through the Throttle (a first attempt's)
// and the quota hold of its limit. For a first attempt it returns the error
// RoundTrip returns instead of sending: a rejection, which OnGiveUp
// reports, or a hold cut short by the caller, which OnHold reports and
// OnGiveUp does not: the request never had an outcome to give up on. For a
// retry it returns the caller's cancellation that cut its hold short.
func (r *retrier) admit(n int) error {
	if n > 1 {
		return r.holdAttempt(n)
	}
	if th := r.t.Policy.Throttle; th != nil {
		if err := th.admit(r.req.URL, r.clock.Now()); err != nil {
			return r.reportGiveUp(0, nil, err, ErrThrottled, serverWait{})
		}
	}
	if err := r.holdAttempt(1); err != nil {
		return &GiveUpError{Attempts: 0, Reason: err}
	}
	return nil
}

// throttled reports whether the Policy's Throttle rejects a hedge, as it
// would a retry.
func (r *retrier) throttled() bool {
	th := r.t.Policy.Throttle
	return th != nil && th.admit(r.req.URL, r.clock.Now()) != nil
}

// holdAttempt passes attempt n of r.req through the quota hold of its
// scope (see limitscope.go), if there is one. A hold that would pass a limit is not waited for,
// and the attempt is sent as usual. It returns an error when the request
// was cancelled while held.
func (r *retrier) holdAttempt(n int) (err error) {
	var reason error // the limit a hold would pass, for OnHold
	pl := r.t.holds.find(r.req.URL)
	if pl == nil {
		return nil
	}
	h := pl.hold(pl.requestScope(r.req, r.t.Policy.LimitKey))
	if h == nil {
		return nil
	}
	if r.start.IsZero() {
		r.start = startTime(r.clock)
	}
	p := &r.t.Policy
	var (
		held, jitter time.Duration
		jitterFor    time.Time
		why          HoldReason
		header       string
	)
	defer func() {
		if why != 0 && p.OnHold != nil {
			ev := HoldEvent{Request: r.req, Attempt: n, Held: held, Reason: why, Header: header, Err: err}
			if ev.Err == nil {
				ev.Err = reason
			}
			p.OnHold(ev)
		}
		// A hold that does not fit the limits is not waited for: the
		// attempt is sent as usual, a retry too, so that the caller gets
		// the server's answer (it may have reset early) rather than an
		// error with the response already discarded.
	}()
	defer func() { r.named = delayMark{} }()
	h.mu.Lock()
	for !h.gone {
		now := r.clock.Now()
		lim := r.limits(now)
		if h.spentAt(now) {
			wait := h.reset.Sub(now)
			// The attempt may have been delayed already by waits the
			// server named: a retry's Retry-After, an earlier reset of
			// this hold. MaxRetryAfter bounds them all together, as the
			// other limits do (they count from the first attempt).
			if !r.named.set {
				r.named = r.mark(now)
			}
			named := saturatingAdd(r.delayedSince(r.named, now), wait)
			if !jitterFor.Equal(h.reset) {
				// MaxRetryAfter is one of the limits a hold fits in, its
				// jitter included.
				room := min(lim.room(wait), p.maxRetryAfter()-named)
				jitter, jitterFor = serverWaitJitter(wait, room), h.reset
			}
			total := saturatingAdd(wait, jitter)
			if reason = p.holdLimit(named, total, lim); reason != nil {
				r.pastHold, r.pastReset = h, h.reset
				h.mu.Unlock()
				return nil
			}
			why, header = HoldReset, h.header
			h.waiters++
			h.mu.Unlock()
			started := time.Now()
			err = r.sleepHeld(total)
			if isVirtual(r.clock) {
				held += total + time.Since(started)
				r.played = saturatingAdd(r.played, total)
			} else {
				held += time.Since(started)
			}
			h.mu.Lock()
			h.waiters--
			if err != nil {
				h.mu.Unlock()
				return err
			}
			continue
		}
		if !h.reset.IsZero() {
			h.open()
		}
		if h.left > 0 || h.inflight == 0 {
			// Within the quota, or nobody will bring news: a probe.
			h.left = max(h.left-1, 0)
			h.inflight++
			h.asked()
			r.admitted = h
			break
		}
		room := min(lim.elapsed, p.maxRetryAfter())
		if lim.hasDeadline {
			room = min(room, lim.deadline-jitterMargin)
		}
		if room <= 0 {
			h.mu.Unlock()
			if reason = lim.check(0); reason == nil {
				reason = ErrDeadline
			}
			return nil
		}
		why, header = HoldQuota, h.header
		if h.changed == nil {
			h.changed = make(chan struct{})
		}
		changed := h.changed
		h.waiters++
		h.answering++
		h.asked()
		h.mu.Unlock()
		started := time.Now()
		timedOut, werr := r.awaitAnswer(changed, room)
		held += time.Since(started)
		h.mu.Lock()
		h.waiters--
		if changed == h.changed {
			h.answering-- // timed out or cancelled: not woken by broadcast
		}
		if werr != nil {
			h.mu.Unlock()
			return werr
		}
		if timedOut {
			h.mu.Unlock()
			reason = lim.check(room + 1)
			return nil
		}
	}
	h.mu.Unlock()
	return nil
}

// holdLimit reports the limit a hold would pass, or nil: named is all the
// delay the server named for the attempt, the hold's included, and total
// how long from now the attempt would wait. A reset beyond what a Duration
// holds is beyond any limit, even one of math.MaxInt64, as a retry's named
// wait is. holdAttempt waits for a hold only when it passes none, and
// decide makes a retry free of the Budget only when the hold it spent will
// be waited for (pacedByHold).
func (p *Policy) holdLimit(named, total time.Duration, lim limits) error {
	if named >= maxDelay || named > p.maxRetryAfter() {
		return ErrRetryAfterTooLong
	}
	return lim.check(total)
}

// sleepHeld waits d on the Policy's Clock, or until the request is cancelled
// (an error).
func (r *retrier) sleepHeld(d time.Duration) error {
	ctx := r.req.Context()
	//lint:ignore SA1019 net/http still honours the deprecated Cancel channel, so must a hold.
	if cancel := r.req.Cancel; cancel != nil {
		var stop context.CancelFunc
		ctx, stop = withCancelChannel(ctx, cancel)
		defer stop()
	}
	err := r.clock.Sleep(ctx, d)
	if !requestLive(r.req) {
		if err := r.req.Context().Err(); err != nil {
			return err
		}
		return context.Canceled
	}
	return err
}

// awaitAnswer waits until changed is closed, room has passed in real time,
// or the request is cancelled.
func (r *retrier) awaitAnswer(changed <-chan struct{}, room time.Duration) (timedOut bool, err error) {
	timer := time.NewTimer(room)
	defer timer.Stop()
	//lint:ignore SA1019 net/http still honours the deprecated Cancel channel, so must a hold.
	cancel := r.req.Cancel
	select {
	case <-changed:
		return false, nil
	case <-timer.C:
		return true, nil
	case <-r.req.Context().Done():
		return false, r.req.Context().Err()
	case <-cancel:
		return false, context.Canceled
	}
}
