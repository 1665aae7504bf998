package watch

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// stepParallel bounds how many subscriptions are stepped at once, that is
// how many SUBSCRIBE transactions the subscriber has open at most (besides
// un-subscribing on the way out). It is large enough that a PBX answering
// slowly (a second each, under load) still gets every refresh of 10,000
// subscriptions in time; each step runs in a goroutine of its own, which
// ends with it.
const stepParallel = 1024

// scheduler drives every subscription of a Subscriber from one timer heap
// instead of a goroutine (and its stack) per subscription waiting: a
// subscription says when it wants to be stepped next (subscribe, refresh,
// retry, time out), something that changes what it should do (a NOTIFY, a
// PBX restart, the keepalive's probe) wakes it earlier, and a step runs in
// a goroutine of its own, at most stepParallel at once, one step of a
// subscription at a time.
type scheduler struct {
	mu      sync.Mutex
	idle    *sync.Cond // a step ended
	waiting subHeap    // subscriptions with a time to be stepped, earliest first
	kick    chan struct{}
	sem     chan struct{} // one token per step running
	stopped bool          // run returned: nothing is stepped any more
}

// slot is a subscription's place in the scheduler, guarded by the
// scheduler's lock.
type slot struct {
	at      time.Time // when to step; meaningful while index >= 0
	index   int       // in waiting; -1 when not there
	running bool      // a step runs (or is about to)
	again   bool      // woken while running: step again at once
	gone    bool      // removed: never stepped again
	cancel  context.CancelFunc
}

func newScheduler() *scheduler {
	q := &scheduler{kick: make(chan struct{}, 1), sem: make(chan struct{}, stepParallel)}
	q.idle = sync.NewCond(&q.mu)
	return q
}

// add schedules a new subscription's first step at at.
func (q *scheduler) add(sub *subscription, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.push(sub, at)
}

// wake has sub stepped as soon as it can be: now if it waits, again right
// after the current step if one runs. Callers may hold sub.mu.
func (q *scheduler) wake(sub *subscription) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sl := &sub.slot
	switch {
	case sl.gone:
	case sl.running:
		sl.again = true
	default:
		q.push(sub, time.Now())
	}
}

// remove takes sub out of the schedule for good, cancels its step if one
// runs and waits for it to end.
func (q *scheduler) remove(sub *subscription) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sl := &sub.slot
	sl.gone = true
	if sl.index >= 0 {
		heap.Remove(&q.waiting, sl.index)
	}
	if sl.cancel != nil {
		sl.cancel()
	}
	for sl.running {
		q.idle.Wait()
	}
}

// push puts sub into the heap at at, or moves it there when it is earlier
// than the time it has. Called with mu held.
func (q *scheduler) push(sub *subscription, at time.Time) {
	sl := &sub.slot
	if sl.gone || q.stopped {
		return
	}
	if sl.index >= 0 {
		if !at.Before(sl.at) {
			return
		}
		sl.at = at
		heap.Fix(&q.waiting, sl.index)
	} else {
		sl.at = at
		heap.Push(&q.waiting, sub)
	}
	if sl.index == 0 {
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}

// run steps due subscriptions until ctx is done, then waits for the steps
// that run to end. wait, when not nil, holds
// every step back until it is closed (the first REGISTER).
func (q *scheduler) run(ctx context.Context, wait <-chan struct{}) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		q.mu.Lock()
		q.stopped = true
		for len(q.waiting) > 0 {
			heap.Pop(&q.waiting)
		}
		q.mu.Unlock()
	}()
	select {
	case <-wait:
	case <-ctx.Done():
		return
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		var due *subscription
		wait := time.Hour
		if len(q.waiting) > 0 {
			if d := time.Until(q.waiting[0].slot.at); d > 0 {
				wait = d
			} else {
				due = heap.Pop(&q.waiting).(*subscription)
				due.slot.running = true
			}
		}
		q.mu.Unlock()
		if due != nil {
			select {
			case q.sem <- struct{}{}:
				wg.Go(func() {
					defer func() { <-q.sem }()
					q.step(ctx, due)
				})
				continue
			case <-ctx.Done():
				q.done(due, time.Time{})
				return
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-q.kick:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// step runs one step of sub, which can be cancelled by remove.
func (q *scheduler) step(ctx context.Context, sub *subscription) {
	q.mu.Lock()
	if sub.slot.gone {
		q.mu.Unlock()
		q.done(sub, time.Time{})
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	sub.slot.cancel = cancel
	q.mu.Unlock()
	next := sub.step(ctx)
	cancel()
	q.done(sub, next)
}

// done ends a step: the subscription waits for next (none when zero), or
// is stepped again at once when it was woken meanwhile.
func (q *scheduler) done(sub *subscription, next time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	sl := &sub.slot
	sl.running, sl.cancel = false, nil
	if sl.again {
		sl.again = false
		next = time.Now()
	}
	if !next.IsZero() {
		q.push(sub, next)
	}
	q.idle.Broadcast()
}

// subHeap orders subscriptions by the time of their next step.
type subHeap []*subscription

func (h subHeap) Len() int           { return len(h) }
func (h subHeap) Less(i, j int) bool { return h[i].slot.at.Before(h[j].slot.at) }
func (h subHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].slot.index, h[j].slot.index = i, j
}

func (h *subHeap) Push(x any) {
	sub := x.(*subscription)
	sub.slot.index = len(*h)
	*h = append(*h, sub)
}

func (h *subHeap) Pop() any {
	old := *h
	n := len(old)
	sub := old[n-1]
	old[n-1] = nil
	sub.slot.index = -1
	*h = old[:n-1]
	return sub
}
