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

package routing

import (
	"math"
	"testing"
	"time"
)

// entityWith builds an entity of the given balancing over providers a, b, c… of the given
// weights, whose metrics are read every second.
func entityWith(t *testing.T, b Balancing, weights ...int) *Entity {
	t.Helper()
	es := EntitySpec{Workspace: "ws", Name: "m", Balancing: b}
	spec := Spec{}
	for i, w := range weights {
		name := string(rune('a' + i))
		spec.Providers = append(spec.Providers, ProviderSpec{Workspace: "ws", Name: name, BaseURL: "http://" + name, Ready: true,
			Metrics: &MetricsSpec{URL: "http://" + name + "/metrics", Interval: time.Second}})
		es.Backends = append(es.Backends, BackendSpec{Workspace: "ws", Name: name, ServedModel: "m", Weight: w})
	}
	spec.Entities = []EntitySpec{es}
	table, errs := New(spec, nil)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	e, _ := table.Entity("ws", "m")
	return e
}

// prompt is the blocks of a one-block prompt whose hash is h.
func prompt(h uint64) []uint64 { return []uint64{h} }

func eject(e *Entity, i int, now time.Time) {
	p := Policy{EjectAfter: 1, BaseEjection: time.Minute, MaxEjection: time.Minute}
	e.Backends[i].Provider.Health.Failed(now, 0, p)
}

func TestSignalsCombineTheReportWithThisReplicasRequests(t *testing.T) {
	h := &Health{}
	now := time.Unix(1000, 0)
	h.Begin() // in flight when the report comes
	h.Report(now, EngineReport{Running: 5, Waiting: 2, KVCacheUsage: 0.5, HasKVCacheUsage: true})
	h.Begin()
	h.Begin() // two more since
	sig := h.Signals(now.Add(time.Second), 3*time.Second)
	if !sig.Reported || sig.InFlight != 3 || sig.Waiting != 2 || sig.KVCacheUsage != 0.5 {
		t.Fatalf("signals %+v", sig)
	}
	// The server had 7; this replica has started two more since it said so.
	if sig.Load != 9 {
		t.Errorf("load %d, want 5 running + 2 waiting + 2 started since = 9", sig.Load)
	}
	// Requests waited while 5 ran: the server runs 5 at once, and a new request would queue
	// behind 9+1-5 = 5.
	if sig.Capacity != 5 || sig.Queued() != 5 {
		t.Errorf("capacity %d, queued %d; want 5 and 5", sig.Capacity, sig.Queued())
	}
	h.End()
	h.End()
	h.End()
	if sig := h.Signals(now.Add(time.Second), 3*time.Second); sig.Load != 6 {
		t.Errorf("after this replica's three ended: load %d, want 7-1 = 6", sig.Load)
	}
	// A server that says its maximum is believed over what was seen.
	h.Report(now, EngineReport{Running: 2, MaxRunning: 16})
	if sig := h.Signals(now, time.Second); sig.Capacity != 16 || sig.Queued() != 0 || !math.IsNaN(sig.KVCacheUsage) {
		t.Errorf("reported maximum: %+v", sig)
	}
	// A full KV cache queues a new request even with free slots.
	h.Report(now, EngineReport{Running: 2, MaxRunning: 16, KVCacheUsage: 0.97, HasKVCacheUsage: true})
	if q := h.Signals(now, time.Second).Queued(); q != 1 {
		t.Errorf("full KV cache: queued %d, want 1", q)
	}
}

func TestStaleReportsAreIgnored(t *testing.T) {
	h := &Health{}
	now := time.Unix(1000, 0)
	h.Report(now, EngineReport{Running: 30, Waiting: 10, MaxRunning: 30})
	h.Begin()
	sig := h.Signals(now.Add(3*time.Second+time.Millisecond), 3*time.Second)
	if sig.Reported || sig.Load != 1 || sig.Capacity != 0 || sig.Waiting != 0 || sig.Queued() != 0 {
		t.Errorf("a stale report must leave only this replica's count: %+v", sig)
	}

	// The picker, too: a provider whose last report said it was swamped, long ago, gets its
	// share again.
	e := entityWith(t, CacheAware, 1, 1)
	e.Backends[0].Provider.Health.Report(now, EngineReport{Running: 8, Waiting: 50, MaxRunning: 8})
	e.Backends[1].Provider.Health.Report(now, EngineReport{Running: 0, MaxRunning: 8})
	later := now.Add(time.Minute)
	counts := [2]int{}
	for range 1000 {
		i, _ := e.Pick(later, 0, nil)
		counts[i]++
	}
	if counts[0] < 400 {
		t.Errorf("a stale report still steers the picks: %v", counts)
	}
	// While the report is fresh, the swamped one is avoided.
	for range 200 {
		if i, _ := e.Pick(now, 0, nil); i != 1 {
			t.Fatal("picked the provider whose fresh report shows a queue of 50 over an idle one")
		}
	}
}

func TestSameLoadFasterProviderWins(t *testing.T) {
	e := entityWith(t, CacheAware, 1, 1)
	now := time.Now()
	e.Backends[0].Provider.Health.ObserveStream(now, 100*time.Millisecond, 40*time.Millisecond)
	e.Backends[1].Provider.Health.ObserveStream(now, 100*time.Millisecond, 10*time.Millisecond)
	e.Backends[0].Provider.Health.Begin()
	e.Backends[1].Provider.Health.Begin()
	for range 200 {
		if i, _ := e.Pick(now, 0, nil); i != 1 {
			t.Fatal("with equal loads, picked the provider four times slower per token")
		}
	}
	// Latency samples older than latencyFreshness no longer count: a tie, decided by draw.
	counts := [2]int{}
	for range 1000 {
		i, _ := e.Pick(now.Add(latencyFreshness+time.Second), 0, nil)
		counts[i]++
	}
	if counts[0] < 400 {
		t.Errorf("old latency samples still steer the picks: %v", counts)
	}
}

func TestPrefixesStickToOneProviderAlikeOnEveryReplica(t *testing.T) {
	// Two tables built apart, as two gateway replicas build theirs.
	one, two := entityWith(t, CacheAware, 3, 1, 1), entityWith(t, CacheAware, 3, 1, 1)
	now := time.Now()
	counts := [3]int{}
	const prefixes = 30000
	for p := uint64(1); p <= prefixes; p++ {
		a, ca := one.Pick(now, 0, prompt(p))
		b, cb := two.Pick(now, 0, prompt(p))
		if a != b || ca != Preferred || cb != Preferred {
			t.Fatalf("prefix %d: replica one picked %d (%v), two %d (%v)", p, a, ca, b, cb)
		}
		if again, _ := one.Pick(now, 0, prompt(p)); again != a {
			t.Fatalf("prefix %d moved from %d to %d", p, a, again)
		}
		counts[a]++
	}
	// Prefixes are shared by weight: 3/5, 1/5, 1/5.
	if share := float64(counts[0]) / prefixes; share < 0.57 || share > 0.63 {
		t.Errorf("weight 3 of 5 owns %.3f of the prefixes: %v", share, counts)
	}
	// Removing a provider moves only its own prefixes (rendezvous).
	eject(one, 2, now)
	moved := 0
	for p := uint64(1); p <= prefixes; p++ {
		a, _ := one.Pick(now, 0, prompt(p))
		b, _ := two.Pick(now, 0, prompt(p))
		if b != 2 && a != b {
			moved++
		}
	}
	if moved != 0 {
		t.Errorf("ejecting c moved %d prefixes it did not own", moved)
	}
}

func TestBoundedLoadSpillsFromABusyPreferredProvider(t *testing.T) {
	e := entityWith(t, CacheAware, 1, 1, 1)
	now := time.Now()
	const prefix = 42
	preferred, c := e.Pick(now, 0, prompt(prefix))
	if c != Preferred {
		t.Fatalf("choice %v", c)
	}
	h := e.Backends[preferred].Provider.Health
	// With no reports, this replica's own counts decide: the preferred one may hold up to
	// loadBound times its share of the load, plus loadSlack: ceil(1.25 × 1/3 × (n+1)) + 1
	// with n in flight.
	h.Begin()
	h.Begin()
	if i, c := e.Pick(now, 0, prompt(prefix)); i != preferred || c != Preferred {
		t.Fatalf("with 2 of 2 in flight (bound 3): picked %d (%v), want the preferred %d", i, c, preferred)
	}
	h.Begin()
	if i, c := e.Pick(now, 0, prompt(prefix)); i == preferred || c != Spilled {
		t.Fatalf("with 3 of 3 in flight (bound 3): picked %d (%v), want another", i, c)
	}
	// The spill goes to the next provider in the prefix's ranking, the same each time.
	next, _ := e.Pick(now, 0, prompt(prefix))
	for range 100 {
		if i, _ := e.Pick(now, 0, prompt(prefix)); i != next {
			t.Fatalf("spilled to %d, then %d", next, i)
		}
	}
}

func TestQueuesDecideWhenTheServersReportThem(t *testing.T) {
	e := entityWith(t, CacheAware, 1, 1, 1)
	now := time.Now()
	const prefix = 7
	preferred, _ := e.Pick(now, 0, prompt(prefix))
	for i := range e.Backends {
		e.Backends[i].Provider.Health.Report(now, EngineReport{Running: 2, MaxRunning: 8})
	}
	// Full: a new request would queue behind one; the others have room, yet a server that
	// runs 8 at once frees a slot soon enough for the prefix to be worth one queue position.
	e.Backends[preferred].Provider.Health.Report(now, EngineReport{Running: 8, MaxRunning: 8})
	if i, c := e.Pick(now, 0, prompt(prefix)); i != preferred || c != Preferred {
		t.Fatalf("queue of 1: picked %d (%v), want the preferred %d", i, c, preferred)
	}
	e.Backends[preferred].Provider.Health.Report(now, EngineReport{Running: 8, Waiting: 1, MaxRunning: 8})
	if i, c := e.Pick(now, 0, prompt(prefix)); i == preferred || c != Spilled {
		t.Fatalf("queue of 2: picked %d (%v), want another", i, c)
	}
	// A server that runs 3 at once is not waited for.
	for i := range e.Backends {
		e.Backends[i].Provider.Health.Report(now, EngineReport{Running: 1, MaxRunning: 3})
	}
	e.Backends[preferred].Provider.Health.Report(now, EngineReport{Running: 3, MaxRunning: 3})
	if i, c := e.Pick(now, 0, prompt(prefix)); i == preferred || c != Spilled {
		t.Fatalf("capacity 3, queue of 1: picked %d (%v), want another", i, c)
	}
	// A server that runs 256 at once frees a slot often: its prefix may wait behind 32 more.
	for i := range e.Backends {
		e.Backends[i].Provider.Health.Report(now, EngineReport{Running: 10, MaxRunning: 256})
	}
	e.Backends[preferred].Provider.Health.Report(now, EngineReport{Running: 256, Waiting: 31, MaxRunning: 256})
	if i, c := e.Pick(now, 0, prompt(prefix)); i != preferred || c != Preferred {
		t.Fatalf("capacity 256, queue of 31: picked %d (%v), want the preferred %d", i, c, preferred)
	}
	e.Backends[preferred].Provider.Health.Report(now, EngineReport{Running: 256, Waiting: 32, MaxRunning: 256})
	if i, c := e.Pick(now, 0, prompt(prefix)); i == preferred || c != Spilled {
		t.Fatalf("capacity 256, queue of 32: picked %d (%v), want another", i, c)
	}
	// When every provider queues alike, the prefix decides again.
	for i := range e.Backends {
		e.Backends[i].Provider.Health.Report(now, EngineReport{Running: 8, Waiting: 3, MaxRunning: 8})
	}
	if i, c := e.Pick(now, 0, prompt(prefix)); i != preferred || c != Preferred {
		t.Fatalf("equal queues: picked %d (%v), want the preferred %d", i, c, preferred)
	}
	// Without a prefix, the shortest queue wins whenever it is drawn.
	e.Backends[2].Provider.Health.Report(now, EngineReport{Running: 8, Waiting: 1, MaxRunning: 8})
	got := [3]int{}
	for range 3000 {
		i, _ := e.Pick(now, 0, nil)
		got[i]++
	}
	// c wins every draw it is in: 2 of the 3 pairs.
	if share := float64(got[2]) / 3000; share < 0.6 || share > 0.73 {
		t.Errorf("the shortest queue got %.2f of the picks, want about 2/3: %v", share, got)
	}
}

func TestEjectedProvidersAreNeverChosenWhileAnotherIsAvailable(t *testing.T) {
	for _, b := range []Balancing{CacheAware, LeastRequest, RoundRobin, Failover} {
		t.Run(b.String(), func(t *testing.T) {
			e := entityWith(t, b, 5, 1, 1)
			now := time.Now()
			eject(e, 0, now)
			eject(e, 2, now)
			// Even with the others loaded and the ejected one idle.
			e.Backends[1].Provider.Health.Report(now, EngineReport{Running: 8, Waiting: 20, MaxRunning: 8})
			for p := range uint64(2000) {
				if i, c := e.Pick(now, 0, prompt(p)); i != 1 {
					t.Fatalf("prefix %d: picked %d (%v), an ejected provider", p, i, c)
				}
			}
			// Once the only one left is tried, the ejected one that failed longest ago.
			if i, c := e.Pick(now, 1<<1, nil); c != AllEjected || (i != 0 && i != 2) {
				t.Errorf("all ejected: %d (%v)", i, c)
			}
		})
	}
}

func TestRoundRobinFollowsWeightsSmoothly(t *testing.T) {
	e := entityWith(t, RoundRobin, 4, 2, 2) // reduced to 2, 1, 1
	now := time.Now()
	var order []int
	for range 8 {
		i, c := e.Pick(now, 0, prompt(99))
		if c != ByPolicy {
			t.Fatalf("choice %v", c)
		}
		order = append(order, i)
	}
	// nginx's smooth weighted round-robin over 2, 1, 1.
	want := []int{0, 1, 2, 0, 0, 1, 2, 0}
	for k := range want {
		if order[k] != want[k] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	// Load does not matter to it.
	for range 10 {
		e.Backends[0].Provider.Health.Begin()
	}
	counts := [3]int{}
	for range 400 {
		i, _ := e.Pick(now, 0, nil)
		counts[i]++
	}
	if counts != [3]int{200, 100, 100} {
		t.Errorf("counts %v, want 200, 100, 100", counts)
	}
}

func TestRoundRobinGoesOnAcrossTables(t *testing.T) {
	spec := Spec{
		Providers: []ProviderSpec{{Workspace: "ws", Name: "a", BaseURL: "http://a", Ready: true}, {Workspace: "ws", Name: "b", BaseURL: "http://b", Ready: true}},
		Entities: []EntitySpec{{Workspace: "ws", Name: "m", Balancing: RoundRobin, Backends: []BackendSpec{
			{Workspace: "ws", Name: "a", ServedModel: "m"}, {Workspace: "ws", Name: "b", ServedModel: "m"}}}},
	}
	first, _ := New(spec, nil)
	e, _ := first.Entity("ws", "m")
	if i, _ := e.Pick(time.Now(), 0, nil); i != 0 {
		t.Fatalf("first pick %d", i)
	}
	// Any change rebuilds the table: the turn goes on to b, not back to a.
	second, _ := New(spec, first)
	e, _ = second.Entity("ws", "m")
	if i, _ := e.Pick(time.Now(), 0, nil); i != 1 {
		t.Errorf("after a rebuild, picked %d, want 1", i)
	}
}

func TestFailoverTakesTheFirstAvailable(t *testing.T) {
	e := entityWith(t, Failover, 1, 5, 1)
	now := time.Now()
	for range 10 {
		e.Backends[0].Provider.Health.Begin()
	}
	if i, _ := e.Pick(now, 0, prompt(5)); i != 0 {
		t.Errorf("picked %d, want the first", i)
	}
	if i, _ := e.Pick(now, 1, prompt(5)); i != 1 {
		t.Errorf("first tried: picked %d, want the second", i)
	}
}

func TestSmoothSchedule(t *testing.T) {
	for _, tc := range []struct {
		weights []int
		want    []uint8
	}{
		{[]int{1}, []uint8{0}},
		{[]int{5, 1, 1}, []uint8{0, 0, 1, 0, 2, 0, 0}},
		{[]int{3, 3}, []uint8{0, 1}},
	} {
		got := smoothSchedule(tc.weights)
		if string(got) != string(tc.want) {
			t.Errorf("smoothSchedule(%v) = %v, want %v", tc.weights, got, tc.want)
		}
	}
	// Heavy weights are scaled down, every provider kept.
	got := smoothSchedule([]int{100000, 1})
	ones := 0
	for _, i := range got {
		if i == 1 {
			ones++
		}
	}
	if len(got) > 4096 || ones != 1 {
		t.Errorf("schedule of 100000:1 has %d entries, %d of the light one", len(got), ones)
	}
}

// BenchmarkPickCacheAware picks for prompts of 28 blocks (7 KiB, a long system prompt and a
// question), of 24 applications, and records each in the chosen provider's index, as the
// gateway does.
func BenchmarkPickCacheAware(b *testing.B) {
	t := &testing.T{}
	e := entityWith(t, CacheAware, 1, 1, 1)
	now := time.Now()
	for i := range e.Backends {
		e.Backends[i].Provider.Health.Report(now, EngineReport{Running: 3, Waiting: 1, MaxRunning: 8, KVCacheUsage: 0.4, HasKVCacheUsage: true})
	}
	prompts := make([][]uint64, 24)
	for app := range prompts {
		for k := range 28 {
			prompts[app] = append(prompts[app], uint64(app)<<32|uint64(k+1))
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		blocks := prompts[i%len(prompts)]
		idx, _ := e.Pick(now, 0, blocks)
		e.Backends[idx].Provider.Prefixes.Add(blocks)
	}
}
