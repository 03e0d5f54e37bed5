package retrytest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/b4dedce7/retryhttp"
)

// Clock is a fake clock for retryhttp.Policy.Clock: it stands still until
// the Transport waits, then moves forward by the wait at once and records
// it, so that a test can play a "Retry-After: 120" in microseconds and then
// assert that the Transport waited 120 s (plus its jitter of up to a fifth).
//
// A Clock belongs to the test that made it: once that test has ended, Sleep
// returns an error instead of waiting, so that a Clock shared by mistake
// with a later test makes that test's requests fail rather than mix both
// tests' waits. Concurrent waits, from requests running at once, each move
// the clock forward by their own length, one after the other.
//
// A Clock is safe for concurrent use.
type Clock struct {
	mu    sync.Mutex
	now   time.Time
	waits []time.Duration
	owner string
	ended bool
	moved chan struct{} // closed, and replaced, whenever the time moves
}

// NewClock returns a Clock that reads the current real time rounded down to
// a whole second (HTTP-dates have no fractions) and then moves only when
// waited on or advanced. It belongs to t, and ends with it; t may be nil
// outside a test, as in an example, and the Clock then never ends.
func NewClock(t testing.TB) *Clock {
	c := &Clock{now: time.Now().Truncate(time.Second)}
	if t == nil {
		return c
	}
	t.Helper()
	c.owner = t.Name()
	t.Cleanup(func() {
		c.mu.Lock()
		c.ended = true
		c.mu.Unlock()
	})
	return c
}

// Now returns the clock's current time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep moves the clock forward by d, if d is positive, and records the
// wait, without sleeping. If ctx is already done it returns ctx.Err() and
// the clock does not move. After the Clock's test has ended it returns an
// error that says so.
func (c *Clock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended {
		return fmt.Errorf("retrytest: the Clock of %s was used after that test ended; make a Clock per test", c.owner)
	}
	c.waits = append(c.waits, d)
	if d > 0 {
		c.move(d)
	}
	return nil
}

// move moves the clock forward by d and wakes whatever waits for a time on
// it; c.mu is held.
func (c *Clock) move(d time.Duration) {
	c.now = c.now.Add(d)
	if c.moved != nil {
		close(c.moved)
		c.moved = nil
	}
}

// waitUntil returns once the clock reads t or later, or when ctx is done,
// with ctx's error.
func (c *Clock) waitUntil(ctx context.Context, t time.Time) error {
	for {
		c.mu.Lock()
		if !c.now.Before(t) {
			c.mu.Unlock()
			return nil
		}
		if c.moved == nil {
			c.moved = make(chan struct{})
		}
		moved := c.moved
		c.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Advance moves the clock forward by d, as time passing outside any wait
// would, without recording a wait. A negative d is a mistake and panics.
func (c *Clock) Advance(d time.Duration) {
	if d < 0 {
		panic(fmt.Sprintf("retrytest: Clock.Advance(%v): a clock cannot go back", d))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.move(d)
}

// Virtual reports true: the Clock moves only when waited on or advanced, so
// a retryhttp.Transport plays each wait on it in full, however long its own
// work took in real time, and concurrent requests' waits are each recorded
// whole. It makes Clock a retryhttp.VirtualClock.
func (c *Clock) Virtual() bool { return true }

var _ retryhttp.VirtualClock = (*Clock)(nil)

// Waits returns the waits the Clock was asked for, in the order they were
// asked for. Each entry is one wait between two attempts.
func (c *Clock) Waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.waits...)
}

// Waited returns the sum of all the waits the Clock was asked for.
func (c *Clock) Waited() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var sum time.Duration
	for _, w := range c.waits {
		sum += w
	}
	return sum
}
