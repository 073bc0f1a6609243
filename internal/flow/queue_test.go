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

package flow

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

// full is a pool with no free slot; one a pool with one.
var (
	full = Room{Free: 0, Capacity: 8}
	one  = Room{Free: 1, Capacity: 8}
)

func ticket(ws string, c Class, cost float64) *Ticket {
	return &Ticket{Workspace: ws, Weight: 1, Class: c, Cost: cost}
}

// enqueue admits t to a saturated queue, so that it waits.
func enqueue(t *testing.T, q *Queue, tk *Ticket, at time.Time) {
	t.Helper()
	wait, err := q.Admit(tk, full, 1<<20, at)
	if err != nil || !wait {
		t.Fatalf("Admit(%s) = %v, %v; want it to wait", tk.Workspace, wait, err)
	}
}

// next dispatches one ticket through a free slot and returns it.
func next(t *testing.T, q *Queue, waiting map[*Ticket]bool) *Ticket {
	t.Helper()
	q.Dispatch(one)
	for tk := range waiting {
		select {
		case <-tk.ready:
			delete(waiting, tk)
			q.Started(tk)
			return tk
		default:
		}
	}
	t.Fatal("nothing was dispatched")
	return nil
}

// serve keeps every workspace backlogged with requests of its cost and dispatches n of them;
// it returns the tokens each workspace was served.
func serve(t *testing.T, q *Queue, n int, classOf map[string]Class, weight, cost map[string]float64) map[string]float64 {
	t.Helper()
	waiting := map[*Ticket]bool{}
	at := t0
	add := func(ws string) {
		at = at.Add(time.Millisecond)
		tk := &Ticket{Workspace: ws, Weight: weight[ws], Class: classOf[ws], Cost: cost[ws]}
		enqueue(t, q, tk, at)
		waiting[tk] = true
	}
	for ws := range cost {
		add(ws)
		add(ws)
	}
	served := map[string]float64{}
	for range n {
		tk := next(t, q, waiting)
		served[tk.Workspace] += tk.Cost
		add(tk.Workspace)
	}
	return served
}

func TestSharesFollowWeightsByTokens(t *testing.T) {
	q := NewQueue()
	weight := map[string]float64{"a": 1, "b": 2, "c": 1}
	// c sends prompts ten times as long: it gets its share of tokens, not of requests.
	cost := map[string]float64{"a": 100, "b": 100, "c": 1000}
	classOf := map[string]Class{"a": Standard, "b": Standard, "c": Standard}
	served := serve(t, q, 4000, classOf, weight, cost)
	total := served["a"] + served["b"] + served["c"]
	want := map[string]float64{"a": 0.25, "b": 0.5, "c": 0.25}
	for ws, share := range want {
		if got := served[ws] / total; math.Abs(got-share) > 0.01 {
			t.Errorf("%s got %.3f of the tokens, want %.2f (served %v)", ws, got, share, served)
		}
	}
}

func TestStrictPriorityBetweenClasses(t *testing.T) {
	q := NewQueue()
	waiting := map[*Ticket]bool{}
	for i := range 5 {
		tk := ticket("bulk", Sheddable, 10)
		enqueue(t, q, tk, t0.Add(time.Duration(i)))
		waiting[tk] = true
		tk = ticket("std", Standard, 10)
		enqueue(t, q, tk, t0.Add(time.Duration(i)))
		waiting[tk] = true
	}
	crit := ticket("late", Critical, 1_000_000)
	enqueue(t, q, crit, t0.Add(time.Hour)) // last in, largest counter after dispatch
	waiting[crit] = true
	if got := next(t, q, waiting); got != crit {
		t.Fatalf("first dispatched %s/%s, want the Critical one", got.Workspace, got.Class)
	}
	for range 5 {
		if got := next(t, q, waiting); got.Class != Standard {
			t.Fatalf("dispatched %s before every Standard one", got.Class)
		}
	}
	// A Sheddable request leaves the reserve free: one slot of 8 is not enough.
	if n := q.Dispatch(one); n != 5 {
		t.Fatalf("Sheddable took the reserved slot: %d wait, want 5", n)
	}
	if n := q.Dispatch(Room{Free: 2, Capacity: 8}); n != 4 {
		t.Fatalf("with 2 free of 8, %d wait; want 4", n)
	}
	// Only Sheddable requests wait (one dispatched is pending): a Critical one that finds the
	// reserved slot free takes it at once, without waiting for the pump.
	if wait, err := q.Admit(ticket("late", Critical, 1), Room{Free: 2, Capacity: 8}, 1024, t0.Add(2*time.Hour)); wait || err != nil {
		t.Fatalf("Critical behind Sheddable ones: wait=%v err=%v", wait, err)
	}
}

func TestWorkConserving(t *testing.T) {
	q := NewQueue()
	// Alone, a workspace takes every free slot, at once and from the queue.
	for i := range 8 {
		if wait, err := q.Admit(ticket("solo", Standard, 100), Room{Free: 8, Capacity: 8}, 16, t0); wait || err != nil {
			t.Fatalf("request %d with a free slot: wait=%v err=%v", i, wait, err)
		}
	}
	waiting := map[*Ticket]bool{}
	for range 4 {
		tk := ticket("solo", Standard, 100)
		enqueue(t, q, tk, t0)
		waiting[tk] = true
	}
	if n := q.Dispatch(Room{Free: 12, Capacity: 20}); n != 0 {
		t.Fatalf("%d still wait with free slots", n)
	}
	// Unknown capacity never queues.
	if wait, _ := q.Admit(ticket("x", Sheddable, 1), Room{Free: Unbounded}, 0, t0); wait {
		t.Fatal("a pool of unknown capacity queued a request")
	}
}

func TestIdleWorkspaceDoesNotBankItsShare(t *testing.T) {
	q := NewQueue()
	cost := map[string]float64{"busy": 100}
	serve(t, q, 1000, map[string]Class{"busy": Standard}, map[string]float64{"busy": 1}, cost)
	// "late" arrives after busy was served 100,000 tokens alone: it is lifted to busy's counter
	// less its burst allowance (4 requests of the pool's mean cost, 100), so that it sends a
	// few requests first and then alternates, rather than taking 1,000 in a row.
	tk := ticket("late", Standard, 100)
	enqueue(t, q, tk, t0.Add(time.Hour))
	if got, busy := q.Counter("late"), q.Counter("busy"); got < busy-burstRequests*100-1 {
		t.Fatalf("late's counter %v, busy's %v: late banked its idle time", got, busy)
	}
}

func TestFullQueueShedsLowerClassFirst(t *testing.T) {
	q := NewQueue()
	shed := ticket("bulk", Sheddable, 1)
	if wait, err := q.Admit(shed, full, 2, t0); !wait || err != nil {
		t.Fatal(wait, err)
	}
	std := ticket("a", Standard, 1)
	if wait, err := q.Admit(std, full, 2, t0.Add(1)); !wait || err != nil {
		t.Fatal(wait, err)
	}
	crit := ticket("b", Critical, 1)
	if wait, err := q.Admit(crit, full, 2, t0.Add(2)); !wait || err != nil {
		t.Fatalf("Critical into a full queue with a Sheddable in it: %v %v", wait, err)
	}
	if err := q.Wait(context.Background(), shed, time.Minute); !errors.Is(err, ErrShed) {
		t.Fatalf("the Sheddable ticket: %v, want ErrShed", err)
	}
	// Nothing below Standard is left: another Standard is refused.
	if _, err := q.Admit(ticket("c", Standard, 1), full, 2, t0.Add(3)); !errors.Is(err, ErrFull) {
		t.Fatalf("Standard into a full queue: %v, want ErrFull", err)
	}
	// A bound of 0 refuses what cannot go at once, and sheds nobody for it.
	other := ticket("bulk", Sheddable, 1)
	if _, err := q.Admit(other, full, 8, t0.Add(3)); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Admit(ticket("d", Critical, 1), full, 0, t0.Add(4)); !errors.Is(err, ErrFull) {
		t.Fatalf("bound 0 queued: %v", err)
	}
	if n := q.Len(); n != 3 {
		t.Fatalf("%d wait after a refusal at bound 0, want 3", n)
	}
}

func TestLeavingTheQueue(t *testing.T) {
	q := NewQueue()
	tk := ticket("a", Standard, 1)
	enqueue(t, q, tk, t0)
	other := ticket("b", Standard, 1)
	enqueue(t, q, other, t0.Add(1))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- q.Wait(ctx, tk, time.Hour) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait after the client left: %v", err)
	}
	if n := q.Len(); n != 1 {
		t.Fatalf("%d wait after one left, want 1", n)
	}
	if err := q.Wait(context.Background(), other, time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Wait past its time: %v", err)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("%d wait, want 0", n)
	}
	// The queue is empty: the next request goes at once.
	if wait, _ := q.Admit(ticket("c", Standard, 1), one, 8, t0); wait {
		t.Fatal("queued with a free slot and nothing waiting")
	}
}

func TestPendingSlotsAreNotGivenTwice(t *testing.T) {
	q := NewQueue()
	first := ticket("a", Standard, 1)
	if wait, _ := q.Admit(first, one, 8, t0); wait {
		t.Fatal("queued with a free slot")
	}
	// The room still says one free slot: the first request has not started upstream yet.
	second := ticket("a", Standard, 1)
	if wait, _ := q.Admit(second, one, 8, t0); !wait {
		t.Fatal("a pending slot was given twice")
	}
	q.Started(first)
	if n := q.Dispatch(one); n != 0 {
		t.Fatalf("%d wait once the first started", n)
	}
}

func TestParseClass(t *testing.T) {
	for _, c := range []Class{Sheddable, Standard, Critical} {
		if got, ok := ParseClass(c.String()); !ok || got != c {
			t.Errorf("ParseClass(%q) = %v %v", c, got, ok)
		}
	}
	if _, ok := ParseClass("urgent"); ok {
		t.Error("ParseClass accepted urgent")
	}
	if Reserve(8) != 1 || Reserve(32) != 4 || Reserve(7) != 0 {
		t.Error("Reserve is an eighth")
	}
}

// BenchmarkAdmitUnsaturated is the queue's whole cost for a request that does not wait:
// admission with a free slot, its start upstream and its charge once over.
func BenchmarkAdmitUnsaturated(b *testing.B) {
	q := NewQueue()
	room := Room{Free: 1 << 20, Capacity: 1 << 20}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var t Ticket
		for pb.Next() {
			t = Ticket{Workspace: "team", Weight: 1, Class: Standard, Cost: 100}
			if wait, _ := q.Admit(&t, room, 1024, t0); wait {
				b.Fatal("waited")
			}
			q.Started(&t)
			q.Charge(&t, 50)
		}
	})
}
