package retryhttp

import (
	"context"
	"time"
)

// Clock is the source of time of a Transport: the current time, against
// which HTTP-dates and Policy.MaxElapsed are measured, and the waits between
// attempts. Implementations must be safe for concurrent use. Package
// retrytest has a fake Clock that moves forward when the Transport waits; a
// Clock like it, whose time moves only when it is waited on, should also
// implement VirtualClock.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done, whichever comes first. It
	// returns nil after a full wait, and otherwise an error that wraps
	// ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// VirtualClock is implemented by a Clock whose time moves only when it is
// waited on (or advanced by a test), such as retrytest.Clock; a Transport
// checks for it with a type assertion, so implementing it is optional.
//
// On a Clock whose Virtual method returns true, the Transport plays each wait
// in full, since its own work takes no time there, and measures that work
// (OnRetry, discarding the old response body) in real time against
// Policy.MaxElapsed and the deadline. The waits it played count against the
// context's deadline as if they had taken real time. On any other Clock, that work's time
// is taken from the wait, as on the real clock. A Clock that wraps the real
// clock, for logging or metrics, should not implement VirtualClock, or
// should return false.
type VirtualClock interface {
	Clock
	// Virtual reports whether the Clock's time moves only when it is
	// waited on.
	Virtual() bool
}

// isVirtual reports whether c is a VirtualClock that says it is virtual.
func isVirtual(c Clock) bool {
	v, ok := c.(VirtualClock)
	return ok && v.Virtual()
}

// realClock is the Clock of the real world.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// monotonicBase is a fixed reading of the real clock that startTime counts
// from.
var monotonicBase = time.Now()

// startTime returns the current time of c for the start of a request. On
// the real clock it reads only the monotonic clock, which costs half of
// time.Now on the happy path, where every request pays for it: the start
// is only ever compared with later readings, which use the monotonic clock
// too.
func startTime(c Clock) time.Time {
	if _, ok := c.(realClock); ok {
		return monotonicBase.Add(time.Since(monotonicBase))
	}
	return c.Now()
}

func (realClock) Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
