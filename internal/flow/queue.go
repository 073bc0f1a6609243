/*
Copyright 2026 The infergate Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

// Package flow decides who waits, and who goes next, when every provider of a request is
// saturated: a gateway replica's queue per pool of providers, with strict priority between
// classes and, within a class, weighted fair queuing over workspaces by tokens served (virtual
// token counters, after Sheng et al., "Fairness in Serving Large Language Models", OSDI 2024).
//
// The package knows nothing of HTTP or of providers: the gateway tells it how much room the
// pool has, and it tells the gateway which request goes.
package flow

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Class is a request's priority class. Higher classes are dispatched first; the zero value
// is Standard.
type Class uint8

const (
	// Standard is the default class.
	Standard Class = iota
	// Critical requests are never queued behind lower classes.
	Critical
	// Sheddable requests go last and are refused first; they leave a reserve of the pool free
	// for higher classes (see Reserve).
	Sheddable
)

// Classes is the number of classes.
const Classes = 3

// rank orders classes: 0 for the lowest.
func (c Class) rank() int {
	switch c {
	case Sheddable:
		return 0
	case Critical:
		return 2
	}
	return 1
}

// byRank are the classes, lowest first.
var byRank = [Classes]Class{Sheddable, Standard, Critical}

// Above tells whether c is a higher class than d.
func (c Class) Above(d Class) bool { return c.rank() > d.rank() }

func (c Class) String() string {
	switch c {
	case Sheddable:
		return "Sheddable"
	case Critical:
		return "Critical"
	}
	return "Standard"
}

// ParseClass reads a class name, in any case.
func ParseClass(s string) (Class, bool) {
	for c := range Class(Classes) {
		if strings.EqualFold(s, c.String()) {
			return c, true
		}
	}
	return Standard, false
}

// Reserve is how many of a pool's free slots Sheddable requests leave to higher classes: an
// eighth of its capacity (none below 8). A Critical request that arrives while Sheddable ones
// fill the pool then finds a slot at once instead of waiting for one to end.
func Reserve(capacity int) int { return capacity / 8 }

// Errors of Wait and Admit.
var (
	// ErrFull: the queue holds as many requests as its bound, none of a lower class.
	ErrFull = errors.New("the queue is full")
	// ErrShed: a request of a higher class took this one's place in a full queue.
	ErrShed = errors.New("shed for a request of a higher class")
	// ErrTimeout: no capacity freed within the request's maximum queue time.
	ErrTimeout = errors.New("no capacity within the maximum queue time")
)

// Room is what a pool can take now: Free slots (Unbounded when some provider's capacity is
// not known, so that nothing waits) out of Capacity.
type Room struct {
	Free, Capacity int
}

// Unbounded is Room.Free when the pool's capacity is not known.
const Unbounded = -1

// allows tells whether a request of class c may take a slot, given pending dispatched requests
// the room does not show yet.
func (r Room) allows(c Class, pending int) bool {
	if r.Free == Unbounded {
		return true
	}
	free := r.Free - pending
	if c == Sheddable {
		return free > Reserve(r.Capacity)
	}
	return free > 0
}

// Ticket is a request's place in a queue. Fill in the exported fields, then Admit it.
type Ticket struct {
	// Workspace is the flow the request belongs to.
	Workspace string
	// Weight is the workspace's share weight (values below a thousandth count as that).
	Weight float64
	// Class is the request's priority class.
	Class Class
	// Cost is the tokens charged to the workspace when the request is dispatched (an estimate
	// of its prompt); Charge corrects it once the request is over.
	Cost float64

	enqueued time.Time
	state    state
	pending  bool // holds one of the queue's pending slots
	err      error
	ready    chan struct{}
	next     *Ticket // the next in its flow
}

type state uint8

const (
	idle state = iota
	waiting
	dispatched
	dropped
)

func (t *Ticket) weight() float64 { return max(t.Weight, 1e-3) }

// flowQ is the tickets of one workspace in one class, oldest first.
type flowQ struct {
	ws         string
	head, tail *Ticket
}

// Queue is one replica's queue for one pool of providers. Its methods are safe for
// concurrent use.
type Queue struct {
	mu    sync.Mutex
	bands [Classes][]*flowQ // backlogged flows per class, by rank
	n     int               // tickets waiting
	nBand [Classes]int      // tickets waiting per class, by rank
	per   map[string]int    // tickets waiting per workspace
	// pending are tickets dispatched whose requests have not started upstream yet: the room
	// the gateway reports does not count them.
	pending  int
	counters counters
	vtime    float64 // the counter of the workspace dispatched last
	meanCost float64 // moving mean of the tokens charged at dispatch, for the burst allowance
	wake     chan struct{}
	used     time.Time // last admission, for Pools' sweep
	waited   time.Time // last time a ticket had to wait, for Pools' exchanges

	room    atomic.Pointer[func() Room] // the pump's view of the pool (Serve)
	pumping atomic.Bool
}

// pumpTick is how often the pump looks at the pool while requests wait and nothing woke it:
// capacity freed by other replicas, or by requests of other pools on the same providers,
// shows only in the providers' signals.
const pumpTick = 5 * time.Millisecond

// Serve makes sure a pump dispatches the queue's tickets while any wait, asking room for the
// pool's room each time it may; the latest room given is used.
func (q *Queue) Serve(room func() Room) {
	q.room.Store(&room)
	if q.pumping.CompareAndSwap(false, true) {
		go q.pump()
		return
	}
	q.Wake() // a Critical ticket may go before the next tick
}

func (q *Queue) pump() {
	t := time.NewTicker(pumpTick)
	defer t.Stop()
	for {
		if q.Dispatch((*q.room.Load())()) == 0 {
			q.pumping.Store(false)
			// A ticket that came after the last look, and found the pump running, is served
			// by this one.
			if q.Len() == 0 || !q.pumping.CompareAndSwap(false, true) {
				return
			}
			continue
		}
		select {
		case <-q.wake:
		case <-t.C:
		}
	}
}

// NewQueue returns an empty queue.
func NewQueue() *Queue {
	return &Queue{per: map[string]int{}, counters: counters{}, wake: make(chan struct{}, 1)}
}

// Admit takes t: at once, when nothing of its class or a higher one waits and room allows its
// class (it returns false), or into the queue (it returns true: call Wait). A full queue sheds its newest ticket of the
// lowest class below t's to make room, or refuses t with ErrFull. bound is the most tickets
// the queue may hold for t; 0 refuses t when it cannot go at once.
func (q *Queue) Admit(t *Ticket, room Room, bound int, now time.Time) (bool, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	t.state, t.err, t.enqueued = idle, nil, time.Time{}
	q.used = now
	if q.waitingFrom(t.Class) == 0 && room.allows(t.Class, q.pending) {
		q.dispatch(t, room)
		return false, nil
	}
	q.waited = now
	if q.n >= bound {
		var victim *Ticket
		if bound > 0 {
			victim = q.lowestBelow(t.Class)
		}
		if victim == nil {
			return false, ErrFull
		}
		q.remove(victim)
		q.drop(victim, ErrShed)
	}
	if q.per[t.Workspace] == 0 {
		q.lift(t)
	}
	t.state, t.enqueued = waiting, now
	if t.ready == nil {
		t.ready = make(chan struct{}, 1)
	}
	q.push(t)
	return true, nil
}

// TryAdmit takes t at once when Admit would (nothing of its class or a higher one waits and
// room allows its class), and tells whether it did; otherwise t stays out of the queue, for
// the caller to try another pool.
func (q *Queue) TryAdmit(t *Ticket, room Room, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	t.state, t.err, t.enqueued = idle, nil, time.Time{}
	if q.waitingFrom(t.Class) != 0 || !room.allows(t.Class, q.pending) {
		return false
	}
	q.used = now
	q.dispatch(t, room)
	return true
}

// Wait blocks until t is dispatched (nil), shed (ErrShed), has waited maxWait (ErrTimeout),
// or ctx is done (its error). A ticket that leaves the queue leaves it at once.
func (q *Queue) Wait(ctx context.Context, t *Ticket, maxWait time.Duration) error {
	timer := time.NewTimer(maxWait)
	defer timer.Stop()
	var err error
	select {
	case <-t.ready:
		return t.err
	case <-timer.C:
		err = ErrTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.state != waiting {
		<-t.ready // dispatched or shed meanwhile
		return t.err
	}
	q.remove(t)
	t.state = dropped
	return err
}

// Dispatch sends waiting tickets, best first, while room allows them; it returns how many
// still wait. The gateway calls it when capacity may have freed.
func (q *Queue) Dispatch(room Room) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.n > 0 {
		f, c := q.best()
		if !room.allows(c, q.pending) {
			break
		}
		t := f.head
		q.remove(t)
		q.dispatch(t, room)
		t.state = dispatched
		t.ready <- struct{}{}
	}
	return q.n
}

// Started releases t's pending slot: its request now counts in the room the gateway reports
// (or is over). It is safe to call more than once, from the goroutine that admitted t.
func (q *Queue) Started(t *Ticket) {
	if !t.pending {
		return
	}
	q.mu.Lock()
	t.pending = false
	q.pending--
	q.mu.Unlock()
}

// Charge adds tokens to the workspace's counter: the difference between what a request cost
// and what Admit or Dispatch charged for it.
func (q *Queue) Charge(t *Ticket, tokens float64) {
	q.mu.Lock()
	q.counters.add(t.Workspace, tokens/t.weight())
	q.mu.Unlock()
}

// Wake tells the pump that capacity may have freed.
func (q *Queue) Wake() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Woken is signalled after Wake.
func (q *Queue) Woken() <-chan struct{} { return q.wake }

// Len returns the tickets waiting.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Counter returns a workspace's virtual token counter: the tokens it was served, each divided
// by its weight then, plus its lifts.
func (q *Queue) Counter(ws string) float64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.counters.value(ws)
}

// waitingFrom returns the tickets waiting of class c or higher.
func (q *Queue) waitingFrom(c Class) int {
	n := 0
	for r := c.rank(); r < Classes; r++ {
		n += q.nBand[r]
	}
	return n
}

// dispatch charges t's cost and lets it go.
func (q *Queue) dispatch(t *Ticket, room Room) {
	q.meanCost += (t.Cost - q.meanCost) / 64
	q.vtime = q.counters.value(t.Workspace)
	q.counters.add(t.Workspace, t.Cost/t.weight())
	if room.Free != Unbounded {
		t.pending = true
		q.pending++
	}
	t.state = dispatched
}

// burstRequests is the burst allowance of a workspace that starts waiting, in requests of the
// pool's mean cost: it may be that far behind the smallest waiting counter, as a task waking up
// in Linux's CFS may be placed a little behind min_vruntime. A workspace that sends little (an
// interactive one) then sends a few requests at once ahead of the backlogged ones instead of
// waiting a round behind them; one that stays backlogged never starts waiting again, so the
// allowance moves no share to it over time.
const burstRequests = 4

// lift raises the counter of a workspace that starts waiting to the smallest counter of those
// that wait, less its burst allowance, or, when none does, to the counter of the one dispatched
// last: a workspace does not bank more than that of the share it left unused while it sent
// nothing.
func (q *Queue) lift(t *Ticket) {
	floor, found := 0.0, false
	for c := range q.bands {
		for _, f := range q.bands[c] {
			if v := q.counters.value(f.ws); !found || v < floor {
				floor, found = v, true
			}
		}
	}
	if !found {
		floor = q.vtime
	} else {
		floor -= burstRequests * q.meanCost / t.weight()
	}
	if v := q.counters.value(t.Workspace); v < floor {
		q.counters.raise(t.Workspace, floor-v)
	}
}

// best returns the flow to serve next: of the highest class that has any, the one whose
// workspace has the smallest counter; the oldest head on a tie.
func (q *Queue) best() (*flowQ, Class) {
	for c := Classes - 1; c >= 0; c-- {
		var best *flowQ
		var bestV float64
		for _, f := range q.bands[c] {
			v := q.counters.value(f.ws)
			if best == nil || v < bestV || v == bestV && f.head.enqueued.Before(best.head.enqueued) {
				best, bestV = f, v
			}
		}
		if best != nil {
			return best, byRank[c]
		}
	}
	return nil, 0
}

// lowestBelow returns the newest ticket of the lowest class below c, or nil.
func (q *Queue) lowestBelow(c Class) *Ticket {
	for k := range c.rank() {
		var newest *Ticket
		for _, f := range q.bands[k] {
			if newest == nil || f.tail.enqueued.After(newest.enqueued) {
				newest = f.tail
			}
		}
		if newest != nil {
			return newest
		}
	}
	return nil
}

func (q *Queue) drop(t *Ticket, err error) {
	t.state, t.err = dropped, err
	t.ready <- struct{}{}
}

func (q *Queue) push(t *Ticket) {
	band := &q.bands[t.Class.rank()]
	var f *flowQ
	for _, g := range *band {
		if g.ws == t.Workspace {
			f = g
			break
		}
	}
	if f == nil {
		f = &flowQ{ws: t.Workspace}
		*band = append(*band, f)
	}
	t.next = nil
	if f.tail == nil {
		f.head = t
	} else {
		f.tail.next = t
	}
	f.tail = t
	q.n++
	q.nBand[t.Class.rank()]++
	q.per[t.Workspace]++
}

// remove takes t out of its flow, wherever it is.
func (q *Queue) remove(t *Ticket) {
	band := &q.bands[t.Class.rank()]
	for i, f := range *band {
		if f.ws != t.Workspace {
			continue
		}
		var prev *Ticket
		for cur := f.head; cur != nil; prev, cur = cur, cur.next {
			if cur != t {
				continue
			}
			if prev == nil {
				f.head = cur.next
			} else {
				prev.next = cur.next
			}
			if f.tail == cur {
				f.tail = prev
			}
			cur.next = nil
			break
		}
		if f.head == nil {
			*band = append((*band)[:i], (*band)[i+1:]...)
		}
		break
	}
	q.n--
	q.nBand[t.Class.rank()]--
	if q.per[t.Workspace]--; q.per[t.Workspace] <= 0 {
		delete(q.per, t.Workspace)
	}
}
