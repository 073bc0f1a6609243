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
	"math/rand/v2"
	"time"
)

// Balancing is how an entity's requests are spread over its providers.
type Balancing uint8

const (
	// CacheAware, the default: a request with a prompt goes to the provider whose server
	// probably holds the longest prefix of it (each provider's PrefixIndex of the prompt
	// blocks sent to it), or, when none holds any, to the one rendezvous hashing of the
	// prompt's opening ranks first, unless it is overloaded (slackPerCapacity, loadBound); then to
	// the next in that order that is not. The others, and those every provider is too loaded
	// for, go to the less loaded of two providers drawn by weight, by the model servers' own
	// reports of their queues where they give them.
	CacheAware Balancing = iota
	// LeastRequest: the less busy of two providers drawn by weight, by this replica's requests
	// in flight per unit of weight (Envoy's least_request).
	LeastRequest
	// RoundRobin: each provider in turn, as often as its weight says (smooth weighted
	// round-robin, per replica).
	RoundRobin
	// Failover: the first provider in order that is not ejected; the others only when it
	// fails. Weights do not apply.
	Failover
)

func (b Balancing) String() string {
	switch b {
	case LeastRequest:
		return "LeastRequest"
	case RoundRobin:
		return "RoundRobin"
	case Failover:
		return "Failover"
	}
	return "CacheAware"
}

// Choice says how Pick chose.
type Choice uint8

const (
	// NoBackend: every backend was tried.
	NoBackend Choice = iota
	// ByPolicy: the entity's policy chose among the backends that are not ejected (for
	// CacheAware, by load, when the request has no prefix).
	ByPolicy
	// Preferred: a provider whose server holds the longest prefix of the request's prompt,
	// or, when none holds any, the one rendezvous hashing ranks first for it.
	Preferred
	// Spilled: the preferred providers were overloaded; another took the request.
	Spilled
	// AllEjected: every untried backend is ejected; the one that failed longest ago.
	AllEjected
)

// Bounded load: when some provider's capacity is unknown, a provider takes a request for its
// prefix while its load, this request included, is within loadBound times its weighted share
// of the candidates' total load (consistent hashing with bounded loads, Mirrokni et al.), plus
// loadSlack, so that a few requests at low load do not scatter a prefix. When every
// capacity is known, the queues decide instead.
const (
	loadBound = 1.25
	loadSlack = 1
)

// slackPerCapacity: a request may wait behind one more request than at the least queued
// candidate, to keep its prefix, per slackPerCapacity requests its server runs at once. A
// queue position costs the time until one of the server's running requests ends, about a
// request's duration divided by the requests it runs; a cache miss elsewhere costs a prefill
// of what that server does not hold, which is also all a spill costs after the first, since
// the server it spilled to holds the prompt from then on. So a server that runs few requests
// at once is not waited for; one that runs 8 is, for one position; one that runs 256, for 32.
const slackPerCapacity = 8

// slack is how much longer than the shortest a queue may be for a request to keep its prefix.
func (s Signals) slack() int64 { return s.Capacity / slackPerCapacity }

// maxSpeedFactor bounds how much slower a provider may be judged than the fastest.
const maxSpeedFactor = 4

// Pick chooses a backend for the next attempt of a request, skipping the backends whose bit
// is set in tried. It chooses among those that are not ejected, by the entity's Balancing;
// blocks are the chained hashes of the request's prompt blocks (none: no prompt worth
// caching), which only CacheAware uses.
// When every untried backend is ejected it returns the one that failed longest ago rather
// than none.
func (e *Entity) Pick(now time.Time, tried uint64, blocks []uint64) (int, Choice) {
	var cand [MaxBackends]uint8
	n, oldest := 0, -1
	var oldestFailure int64
	for i := range e.Backends {
		if tried&(1<<i) != 0 {
			continue
		}
		h := e.Backends[i].Provider.Health
		if h.Ejected(now) {
			if lf := h.lastFailure.Load(); oldest < 0 || lf < oldestFailure {
				oldest, oldestFailure = i, lf
			}
			continue
		}
		cand[n] = uint8(i)
		n++
	}
	switch {
	case n == 0 && oldest >= 0:
		return oldest, AllEjected
	case n == 0:
		return -1, NoBackend
	case n == 1:
		return int(cand[0]), ByPolicy
	}
	switch e.Balancing {
	case Failover:
		return int(cand[0]), ByPolicy
	case RoundRobin:
		return e.roundRobin(cand[:n]), ByPolicy
	case LeastRequest:
		return e.leastRequest(cand[:n]), ByPolicy
	}
	return e.cacheAware(now, cand[:n], blocks)
}

// leastRequest draws two candidates by weight and takes the one with fewer requests in flight
// per unit of weight; the first drawn on a tie, so that idle providers share by weight.
func (e *Entity) leastRequest(cand []uint8) int {
	a, b := e.drawTwo(cand)
	ba, bb := &e.Backends[a], &e.Backends[b]
	// Compare ia/wa with ib/wb without dividing.
	if bb.Provider.Health.InFlight()*int64(ba.Weight) < ba.Provider.Health.InFlight()*int64(bb.Weight) {
		return b
	}
	return a
}

// drawTwo draws two different candidates, each with probability proportional to its weight.
func (e *Entity) drawTwo(cand []uint8) (int, int) {
	total := 0
	for _, i := range cand {
		total += e.Backends[i].Weight
	}
	first := e.draw(cand, total, -1)
	second := e.draw(cand, total-e.Backends[first].Weight, first)
	return first, second
}

func (e *Entity) draw(cand []uint8, total, skip int) int {
	r := 0
	if total > 1 {
		r = rand.IntN(total)
	}
	last := -1
	for _, i := range cand {
		if int(i) == skip {
			continue
		}
		last = int(i)
		if r < e.Backends[i].Weight {
			return int(i)
		}
		r -= e.Backends[i].Weight
	}
	return last
}

// roundRobin takes the next candidate in the entity's weighted schedule.
func (e *Entity) roundRobin(cand []uint8) int {
	var isCand [MaxBackends]bool
	for _, i := range cand {
		isCand[i] = true
	}
	start := e.rr.Add(1) - 1
	for k := range uint64(len(e.schedule)) {
		if i := e.schedule[(start+k)%uint64(len(e.schedule))]; isCand[i] {
			return int(i)
		}
	}
	return int(cand[0])
}

// cacheAware is the CacheAware policy; see Balancing and docs for how the signals combine.
func (e *Entity) cacheAware(now time.Time, cand []uint8, blocks []uint64) (int, Choice) {
	var sig [MaxBackends]Signals
	var queued [MaxBackends]int64
	minQueued := int64(math.MaxInt64)
	var totalLoad int64
	totalWeight := 0
	capacities := true // every candidate's capacity is known
	for k, i := range cand {
		p := e.Backends[i].Provider
		sig[k] = p.Health.Signals(now, p.StaleAfter())
		queued[k] = sig[k].Queued()
		minQueued = min(minQueued, queued[k])
		totalLoad += sig[k].Load
		totalWeight += e.Backends[i].Weight
		capacities = capacities && sig[k].Capacity > 0
	}
	bound := func(k int) float64 {
		return math.Ceil(loadBound*float64(e.Backends[cand[k]].Weight)/float64(totalWeight)*float64(totalLoad+1)) + loadSlack
	}

	choice := ByPolicy
	if len(blocks) > 0 {
		i, c := e.byPrefix(cand, blocks, func(k int) bool {
			return queued[k] <= minQueued+sig[k].slack() && (capacities || float64(sig[k].Load+1) <= bound(k))
		})
		if i >= 0 {
			return i, c
		}
		choice = Spilled
	}
	speed := e.speeds(cand, sig[:len(cand)])
	return e.lessLoaded(cand, sig[:len(cand)], queued[:len(cand)], speed[:len(cand)]), choice
}

// affinityBlocks is how much of a prompt names the server it goes to when no server is known
// to hold it: its first 1 KiB, about 256 tokens. A server holds a request's prefix, for
// routing, when it holds at least that much of it (or the whole prompt, when shorter), so
// that a short preamble many prompts share (a chat template's opening, "You are a helpful
// assistant.") does not pull every new prompt to the server that saw it first.
const affinityBlocks = 4

// byPrefix is CacheAware's choice for a request with a prompt: the candidates in order of the
// longest prefix of the prompt their server probably holds (the provider's PrefixIndex), ties
// broken by weighted rendezvous hashing of the prompt's first affinityBlocks blocks, which
// ranks the servers alike on every replica, so that replicas that have not seen a prompt
// still agree where it goes. The first of them that is not overloaded takes the request:
// Preferred when it holds the longest prefix any candidate holds (or, when none holds any,
// ranks first), Spilled otherwise. room tells whether the k-th candidate is not overloaded; when
// none is, byPrefix returns -1.
func (e *Entity) byPrefix(cand []uint8, blocks []uint64, room func(k int) bool) (int, Choice) {
	enough := min(len(blocks), affinityBlocks)
	key, _ := PrefixKey(blocks)
	var match [MaxBackends]int
	var rank [MaxBackends]float64
	longest := 0
	for k, i := range cand {
		b := &e.Backends[i]
		if m := b.Provider.Prefixes.Match(blocks); m >= enough {
			match[k] = m
			longest = max(longest, m)
		}
		rank[k] = rendezvous(key, b.Provider.seed, float64(b.Weight))
	}
	var done [MaxBackends]bool
	for tries := range cand {
		best := -1
		for k := range cand {
			if !done[k] && (best < 0 || match[k] > match[best] || match[k] == match[best] && rank[k] < rank[best]) {
				best = k
			}
		}
		done[best] = true
		if room(best) {
			if tries == 0 || longest > 0 && match[best] == longest {
				return int(cand[best]), Preferred
			}
			return int(cand[best]), Spilled
		}
	}
	return -1, NoBackend
}

// lessLoaded draws two candidates by weight and takes the one that would queue behind fewer
// requests, then the one with the lower load per unit of weight, scaled by its speed factor;
// the first drawn on a tie.
func (e *Entity) lessLoaded(cand []uint8, sig []Signals, queued []int64, speed []float64) int {
	a, b := e.drawTwo(cand)
	ka, kb := indexOf(cand, a), indexOf(cand, b)
	if queued[ka] != queued[kb] {
		if queued[kb] < queued[ka] {
			return b
		}
		return a
	}
	ca := float64(sig[ka].Load) / float64(e.Backends[a].Weight) * speed[ka]
	cb := float64(sig[kb].Load) / float64(e.Backends[b].Weight) * speed[kb]
	if cb < ca {
		return b
	}
	return a
}

// speeds returns each candidate's speed factor, 1 to maxSpeedFactor: how many times slower
// than the fastest its recent time per output token is, and, for a provider that gives no
// fresh report of its queue, its recent time to first token. A factor is 1 unless every
// candidate has a recent sample to compare with.
func (e *Entity) speeds(cand []uint8, sig []Signals) [MaxBackends]float64 {
	var f [MaxBackends]float64
	var fastTPOT, fastTTFT time.Duration
	allTPOT, allTTFT := true, true
	for k := range cand {
		f[k] = 1
		if t := sig[k].TPOT; t > 0 {
			fastTPOT = minPositive(fastTPOT, t)
		} else {
			allTPOT = false
		}
		if t := sig[k].TTFT; t > 0 {
			fastTTFT = minPositive(fastTTFT, t)
		} else {
			allTTFT = false
		}
	}
	for k := range cand {
		if allTPOT {
			f[k] *= ratio(sig[k].TPOT, fastTPOT)
		}
		if allTTFT && !sig[k].Reported {
			f[k] *= ratio(sig[k].TTFT, fastTTFT)
		}
		f[k] = min(f[k], maxSpeedFactor)
	}
	return f
}

func minPositive(a, b time.Duration) time.Duration {
	if a == 0 || b < a {
		return b
	}
	return a
}

func ratio(t, fastest time.Duration) float64 { return min(float64(t)/float64(fastest), maxSpeedFactor) }

func indexOf(cand []uint8, i int) int {
	for k, c := range cand {
		if int(c) == i {
			return k
		}
	}
	return -1
}

// rendezvous is a backend's weighted rendezvous score for a prefix: the lowest wins, and a
// backend wins a share of prefixes proportional to its weight (-ln(u)/w is exponentially
// distributed with rate w).
func rendezvous(prefix, seed uint64, weight float64) float64 {
	h := mix64(prefix ^ seed)
	u := (float64(h>>11) + 0.5) / (1 << 53) // uniform in (0, 1)
	return -math.Log(u) / weight
}

// mix64 is SplitMix64's finalizer: every input bit affects every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// smoothSchedule is the order of smooth weighted round-robin (nginx's) over weights: each
// index appears as often as its weight, spread out. Weights are first divided by their
// greatest common divisor, and the schedule is bounded: heavier weights are scaled down to
// fit, keeping every index at least once.
func smoothSchedule(weights []int) []uint8 {
	g := 0
	for _, w := range weights {
		g = gcd(g, w)
	}
	total := 0
	scaled := make([]int, len(weights))
	for i, w := range weights {
		scaled[i] = w / max(g, 1)
		total += scaled[i]
	}
	const maxSchedule = 4096
	if total > maxSchedule {
		orig := total
		total = 0
		for i := range scaled {
			scaled[i] = max(1, scaled[i]*maxSchedule/orig)
			total += scaled[i]
		}
	}
	current := make([]int, len(scaled))
	out := make([]uint8, 0, total)
	for range total {
		best := 0
		for i, w := range scaled {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		out = append(out, uint8(best))
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}
