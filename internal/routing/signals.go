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
	"sync/atomic"
	"time"
)

// EngineReport is what a model server says of its own load, read from its Prometheus metrics
// (see package scrape).
type EngineReport struct {
	// Waiting and Running are the requests the server queues and runs.
	Waiting, Running float64
	// KVCacheUsage is the fraction of its KV cache in use, 0 to 1; HasKVCacheUsage tells
	// whether the server reports it.
	KVCacheUsage    float64
	HasKVCacheUsage bool
	// MaxRunning is the most requests the server runs at once, when it says so (NIM's
	// num_request_max); 0 when it does not.
	MaxRunning float64
}

// signals are what the picker knows of a provider's load beyond this replica's in-flight
// count: the model server's last report, and the latency this replica observed.
// They live in Health, so they carry over from one table to the next.
type signals struct {
	// The last report and when it came (unix nanoseconds, 0 never).
	reportedAt   atomic.Int64
	waiting      atomic.Int64
	running      atomic.Int64
	kvUsage      atomic.Uint64 // float64 bits; NaN when not reported
	inflightThen atomic.Int64  // this replica's in-flight count when the report came
	// capacity is the most requests the server runs at once: what it reports, else what it
	// was seen running while others waited (0 while unknown).
	capacity atomic.Int64

	// EWMAs of streams' time to first token and time per output token, in seconds (float64
	// bits), and when each was last updated.
	ttft, tpot     atomic.Uint64
	ttftAt, tpotAt atomic.Int64
}

// ewmaWeight is the weight of a new sample in the latency EWMAs.
const ewmaWeight = 0.25

// latencyFreshness is how long a latency EWMA counts without a new sample: a provider that
// gets no traffic for a while is judged afresh rather than avoided for ever.
const latencyFreshness = 30 * time.Second

// Report records what the model server said of its load at now.
func (h *Health) Report(now time.Time, r EngineReport) {
	s := &h.signals
	running, waiting := int64(math.Round(r.Running)), int64(math.Round(r.Waiting))
	s.running.Store(running)
	s.waiting.Store(waiting)
	kv := math.NaN()
	if r.HasKVCacheUsage {
		kv = r.KVCacheUsage
	}
	s.kvUsage.Store(math.Float64bits(kv))
	s.inflightThen.Store(h.inflight.Load())
	switch {
	case r.MaxRunning >= 1:
		s.capacity.Store(int64(r.MaxRunning))
	case waiting > 0 && running > 0:
		// Requests wait while these run: the server runs no more at once.
		s.capacity.Store(running)
	case running > s.capacity.Load() && s.capacity.Load() > 0:
		s.capacity.Store(running)
	}
	s.reportedAt.Store(now.UnixNano())
}

// LastReport returns the model server's last report and when it came (zero: never).
func (h *Health) LastReport() (EngineReport, time.Time) {
	s := &h.signals
	at := s.reportedAt.Load()
	if at == 0 {
		return EngineReport{}, time.Time{}
	}
	r := EngineReport{Waiting: float64(s.waiting.Load()), Running: float64(s.running.Load())}
	if kv := math.Float64frombits(s.kvUsage.Load()); !math.IsNaN(kv) {
		r.KVCacheUsage, r.HasKVCacheUsage = kv, true
	}
	return r, time.Unix(0, at)
}

// ObserveStream records a stream's time to first token and, when it had more than one token,
// its time per output token.
func (h *Health) ObserveStream(now time.Time, ttft, tpot time.Duration) {
	s := &h.signals
	ewma(&s.ttft, &s.ttftAt, now, ttft.Seconds())
	if tpot > 0 {
		ewma(&s.tpot, &s.tpotAt, now, tpot.Seconds())
	}
}

func ewma(v *atomic.Uint64, at *atomic.Int64, now time.Time, sample float64) {
	fresh := now.UnixNano()-at.Load() < int64(latencyFreshness)
	for {
		old := v.Load()
		next := sample
		if fresh && old != 0 {
			next = math.Float64frombits(old)*(1-ewmaWeight) + sample*ewmaWeight
		}
		if v.CompareAndSwap(old, math.Float64bits(next)) {
			break
		}
	}
	at.Store(now.UnixNano())
}

// Signals is a provider's load as the picker sees it at one moment.
type Signals struct {
	// InFlight is this replica's requests in flight to the provider.
	InFlight int64
	// Reported tells whether a report of the model server is fresh; the fields below it are
	// zero otherwise.
	Reported bool
	// Load estimates the requests the server has now, from every replica: those of its last
	// report, plus those this replica started since, less those that ended.
	Load int64
	// Capacity is the most requests the server runs at once, 0 while unknown.
	Capacity int64
	// Waiting is what the server queued at its last report.
	Waiting int64
	// KVCacheUsage is the fraction of its KV cache in use, NaN when not reported.
	KVCacheUsage float64
	// TTFT and TPOT are this replica's recent latency EWMAs, 0 when there is no recent sample.
	TTFT, TPOT time.Duration
}

// Signals returns the provider's load at now; a report older than staleAfter is ignored.
func (h *Health) Signals(now time.Time, staleAfter time.Duration) Signals {
	s := &h.signals
	sig := Signals{InFlight: h.inflight.Load(), Load: h.inflight.Load(), KVCacheUsage: math.NaN()}
	if at := s.reportedAt.Load(); at != 0 && now.UnixNano()-at <= int64(staleAfter) {
		sig.Reported = true
		sig.Waiting = s.waiting.Load()
		sig.Load = max(sig.InFlight, s.running.Load()+sig.Waiting+sig.InFlight-s.inflightThen.Load())
		sig.Capacity = s.capacity.Load()
		sig.KVCacheUsage = math.Float64frombits(s.kvUsage.Load())
	}
	if now.UnixNano()-s.ttftAt.Load() < int64(latencyFreshness) {
		sig.TTFT = time.Duration(math.Float64frombits(s.ttft.Load()) * float64(time.Second))
	}
	if now.UnixNano()-s.tpotAt.Load() < int64(latencyFreshness) {
		sig.TPOT = time.Duration(math.Float64frombits(s.tpot.Load()) * float64(time.Second))
	}
	return sig
}

// kvFull is the KV cache usage from which a server is treated as queueing: new requests
// there wait for blocks, or preempt others.
const kvFull = 0.95

// Capacity returns the most requests the server runs at once, as last learned, however old
// its last report: 0 while unknown.
func (h *Health) Capacity() int64 { return h.signals.capacity.Load() }

// Free estimates the requests the server could start now without queueing any: its capacity
// less its load, 0 when its KV cache is full. It means nothing while Capacity is unknown (0).
// A pool is saturated when none of its providers that are not ejected has a free slot.
func (s Signals) Free() int64 {
	if s.KVCacheUsage >= kvFull {
		return 0
	}
	return max(0, s.Capacity-s.Load)
}

// Queued estimates how many requests would be ahead of a new one in the server's queue: 0
// when it has a free slot (or when its capacity is unknown), at least 1 when its KV cache is
// full.
func (s Signals) Queued() int64 {
	q := int64(0)
	if s.Capacity > 0 {
		q = max(0, s.Load+1-s.Capacity)
	}
	if s.KVCacheUsage >= kvFull && q == 0 {
		q = 1
	}
	return q
}
