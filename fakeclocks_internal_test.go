package retryhttp

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// stepClock is a Clock whose time moves only when the test advances it.
// Unlike virtualClock, whose waits end at once, a wait on a stepClock
// blocks until the clock has been advanced to its end, or its context is
// done: the test decides when each wait ends, and sees the waits in
// progress (sleeping), such as a quota hold's wait for a reset or a hedge
// delay. Nothing but the test moves it, so a request waiting on it stays
// where it is for as long as the test looks.
type stepClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps []*stepSleep
	ended  chan struct{} // closed when the test ends
}

type stepSleep struct {
	until time.Time
	wake  chan struct{}
}

func newStepClock(t *testing.T) *stepClock {
	c := &stepClock{now: time.Now(), ended: make(chan struct{})}
	t.Cleanup(func() { close(c.ended) })
	return c
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Sleep waits until the clock has been advanced d past now, or ctx is done.
func (c *stepClock) Sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil || d <= 0 {
		return err
	}
	c.mu.Lock()
	s := &stepSleep{until: c.now.Add(d), wake: make(chan struct{})}
	c.sleeps = append(c.sleeps, s)
	c.mu.Unlock()
	select {
	case <-s.wake:
		return nil
	case <-ctx.Done():
	case <-c.ended:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.sleeps, s); i >= 0 {
		c.sleeps = slices.Delete(c.sleeps, i, i+1)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return errors.New("stepClock: waited on after its test ended")
	}
	return nil // woken meanwhile: the wait was played in full
}

// Virtual makes the Transport play each wait in full.
func (*stepClock) Virtual() bool { return true }

// advance moves the clock forward by d, and ends the waits that end by
// then: once it returns, they are no longer sleeping.
func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.sleeps = slices.DeleteFunc(c.sleeps, func(s *stepSleep) bool {
		if s.until.After(c.now) {
			return false
		}
		close(s.wake)
		return true
	})
}

// sleeping returns the ends of the waits in progress.
func (c *stepClock) sleeping() []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ends := make([]time.Time, len(c.sleeps))
	for i, s := range c.sleeps {
		ends[i] = s.until
	}
	return ends
}
