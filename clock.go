package retryhttp

import (
	"context"
	"time"
)

// Clock is the source of time of a Transport: the current time, against
// which HTTP-dates and Policy.MaxElapsed are measured, and the waits between
// attempts. Implementations must be safe for concurrent use. Package
// retrytest has a fake Clock that moves forward when the Transport waits.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Sleep waits for d, or until ctx is done, whichever comes first. It
	// returns nil after a full wait, and otherwise an error that wraps
	// ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// realClock is the Clock of the real world.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

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
