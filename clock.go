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
// have a method Virtual() bool that returns true, so that each wait is
// played on it in full.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done, whichever comes first. It
	// returns nil after a full wait, and otherwise an error that wraps
	// ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// isVirtual reports whether c is a virtual Clock: one whose time moves only
// when it is waited on, such as retrytest.Clock, which says so with a method
// Virtual() bool. The Transport plays each wait on such a clock in full,
// since its own work takes no time there, and measures that work in real
// time for the limits. On any other Clock, the time OnRetry and the
// discarding of the old body take is part of the wait.
func isVirtual(c Clock) bool {
	v, ok := c.(interface{ Virtual() bool })
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
