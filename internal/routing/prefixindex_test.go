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
	"runtime"
	"testing"
	"time"
)

// blocksOf returns n chained-looking block hashes of a prompt: the first `shared` the same
// for every prompt of the same app, the rest its own.
func blocksOf(app, variant uint64, shared, n int) []uint64 {
	out := make([]uint64, n)
	for k := range n {
		if k < shared {
			out[k] = mix64(app<<20 | uint64(k) + 1)
		} else {
			out[k] = mix64(app<<40 | variant<<20 | uint64(k) + 1)
		}
	}
	return out
}

func TestPrefixIndexMatchesTheLongestHeldPrefix(t *testing.T) {
	x := NewPrefixIndex(1000)
	a := blocksOf(1, 1, 20, 24) // a system prompt of 20 blocks and a question of 4
	if got := x.Match(a); got != 0 {
		t.Fatalf("empty index matched %d", got)
	}
	x.Add(a)
	if got := x.Match(a); got != 24 {
		t.Errorf("the prompt itself matched %d blocks, want 24", got)
	}
	// Another question of the same app: the system prompt matches, not the question.
	if got := x.Match(blocksOf(1, 2, 20, 26)); got != 20 {
		t.Errorf("another question matched %d blocks, want the 20 of the system prompt", got)
	}
	// A longer prompt that extends it: what was sent matches.
	if got := x.Match(append(a[:24:24], 77, 78)); got != 24 {
		t.Errorf("an extended prompt matched %d, want 24", got)
	}
	if got := x.Match(blocksOf(2, 1, 20, 24)); got != 0 {
		t.Errorf("another app matched %d", got)
	}
	if got := x.Match(nil); got != 0 {
		t.Errorf("no blocks matched %d", got)
	}
	var none *PrefixIndex
	none.Add(a)
	if none.Match(a) != 0 {
		t.Error("a nil index matched")
	}
}

func TestPrefixIndexIsBoundedAndEvictsTheLeastRecentlySent(t *testing.T) {
	x := NewPrefixIndex(100)
	first := blocksOf(1, 1, 30, 30)
	x.Add(first)
	x.Add(blocksOf(2, 1, 30, 30))
	x.Add(blocksOf(3, 1, 30, 30))
	x.Add(first) // sent again: the most recent now
	if x.Len() != 90 {
		t.Fatalf("len %d, want 90", x.Len())
	}
	x.Add(blocksOf(4, 1, 30, 30)) // 120 blocks: app 2, the least recent, loses 20 blocks
	if x.Len() != 100 {
		t.Fatalf("len %d, want the bound of 100", x.Len())
	}
	if got := x.Match(first); got != 30 {
		t.Errorf("the prompt sent again lost blocks: matched %d", got)
	}
	// A prompt's blocks go last first: app 2 keeps its first 10, not its last.
	if got := x.Match(blocksOf(2, 1, 30, 30)); got != 10 {
		t.Errorf("the least recent prompt matched %d blocks, want its first 10", got)
	}
	for app := uint64(5); app < 100; app++ {
		x.Add(blocksOf(app, 1, 30, 30))
	}
	if x.Len() != 100 || len(x.nodes) != 100 || cap(x.nodes) > 128 {
		t.Errorf("after many prompts: %d blocks, %d nodes (cap %d), want the bound of 100", x.Len(), len(x.nodes), cap(x.nodes))
	}
	if got := x.Match(first); got != 0 {
		t.Errorf("an old prompt still matched %d", got)
	}
	if got := x.Match(blocksOf(99, 1, 30, 30)); got != 30 {
		t.Errorf("the newest prompt matched %d", got)
	}
	// The bound in memory: under 64 bytes a block.
	if b := x.Bytes(); b > 100*64 {
		t.Errorf("%d bytes for 100 blocks", b)
	}
}

func TestCacheAwareGoesWhereTheLongestPrefixIs(t *testing.T) {
	e := entityWith(t, CacheAware, 1, 1, 1)
	now := time.Now()
	for i := range e.Backends {
		e.Backends[i].Provider.Health.Report(now, EngineReport{Running: 2, MaxRunning: 8})
	}
	// An app's questions share 20 blocks of system prompt. With none held anywhere, its
	// opening ranks the providers: every question goes to the same one.
	q1 := blocksOf(1, 1, 20, 24)
	first, c := e.Pick(now, 0, q1)
	if c != Preferred {
		t.Fatalf("choice %v", c)
	}
	for v := uint64(2); v < 50; v++ {
		if i, _ := e.Pick(now, 0, blocksOf(1, v, 20, 24)); i != first {
			t.Fatalf("question %d went to %d, not %d", v, i, first)
		}
	}
	// Once another provider's server holds it, that one wins, whatever the ranking.
	holder := (first + 1) % 3
	e.Backends[holder].Provider.Prefixes.Add(q1)
	if i, c := e.Pick(now, 0, blocksOf(1, 7, 20, 24)); i != holder || c != Preferred {
		t.Fatalf("picked %d (%v), want %d, which holds the system prompt", i, c, holder)
	}
	// The longest prefix wins: the first holds the whole conversation so far.
	turn2 := append(q1[:24:24], blocksOf(9, 9, 0, 8)...)
	e.Backends[first].Provider.Prefixes.Add(turn2[:28])
	if i, _ := e.Pick(now, 0, append(turn2[:28:28], 555)); i != first {
		t.Fatalf("picked %d, want %d, which holds 28 blocks over 24", i, first)
	}
	// A preamble shorter than affinityBlocks that many prompts share does not pull new ones.
	other := (first + 2) % 3
	preamble := blocksOf(3, 1, affinityBlocks-1, affinityBlocks-1)
	e.Backends[other].Provider.Prefixes.Add(preamble)
	counts := [3]int{}
	for app := uint64(100); app < 400; app++ {
		p := append(preamble[:len(preamble):len(preamble)], blocksOf(app, 1, 10, 10)...)
		i, _ := e.Pick(now, 0, p)
		counts[i]++
	}
	if counts[other] > 150 {
		t.Errorf("new prompts sharing a short preamble with %d's: %v", other, counts)
	}
	// A holder without room leaves the request to another that holds as much (still
	// Preferred: no cache is lost), then to the ranking (Spilled).
	e.Backends[holder].Provider.Health.Report(now, EngineReport{Running: 8, Waiting: 4, MaxRunning: 8})
	if i, c := e.Pick(now, 0, blocksOf(1, 8, 20, 24)); i != first || c != Preferred {
		t.Fatalf("busy holder: picked %d (%v), want the other holder %d", i, c, first)
	}
	e.Backends[first].Provider.Health.Report(now, EngineReport{Running: 8, Waiting: 4, MaxRunning: 8})
	if i, c := e.Pick(now, 0, blocksOf(1, 8, 20, 24)); i != other || c != Spilled {
		t.Fatalf("both holders busy: picked %d (%v), want %d, spilled", i, c, other)
	}
}

func BenchmarkPrefixIndexMatch(b *testing.B) {
	x := NewPrefixIndex(DefaultPrefixIndexBlocks)
	for app := range uint64(200) {
		x.Add(blocksOf(app, 1, 28, 28))
	}
	p := blocksOf(150, 2, 28, 30)
	b.ReportAllocs()
	for b.Loop() {
		x.Match(p)
	}
}

func BenchmarkPrefixIndexAdd(b *testing.B) {
	x := NewPrefixIndex(DefaultPrefixIndexBlocks)
	prompts := make([][]uint64, 1000)
	for app := range prompts {
		prompts[app] = blocksOf(uint64(app), 1, 28, 28)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		x.Add(prompts[i%len(prompts)])
	}
}

// TestPrefixIndexMemory reports an index's memory with 10,000 distinct prefixes sent to
// one provider, as the heap measures it and as Bytes estimates it.
func TestPrefixIndexMemory(t *testing.T) {
	for _, tc := range []struct {
		name   string
		blocks int
	}{{"1-block prefixes", 1}, {"28-block prefixes (7 KiB)", 28}} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := NewPrefixIndex(DefaultPrefixIndexBlocks)
		for app := range uint64(10000) {
			x.Add(blocksOf(app, 1, tc.blocks, tc.blocks))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
		t.Logf("%s: %d blocks held, heap %d KiB, estimated %d KiB", tc.name, x.Len(), heap>>10, x.Bytes()>>10)
		if x.Len() != min(10000*tc.blocks, DefaultPrefixIndexBlocks) {
			t.Errorf("%d blocks held", x.Len())
		}
		if est := x.Bytes(); heap > 2*est || est > 64*DefaultPrefixIndexBlocks {
			t.Errorf("heap %d bytes, estimate %d", heap, est)
		}
		runtime.KeepAlive(x)
	}
}
