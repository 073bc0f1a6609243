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
	"math/rand/v2"
	"sync/atomic"
	"time"
)

// Policy says when a failing provider is taken out of rotation and for how long.
type Policy struct {
	// EjectAfter consecutive failures eject a provider. Default 3.
	EjectAfter int
	// BaseEjection is the first cool-down; each further failure doubles it. Default 5s.
	BaseEjection time.Duration
	// MaxEjection caps the cool-down, including one asked for by Retry-After. Default 2m.
	MaxEjection time.Duration
}

// WithDefaults fills the zero fields of p.
func (p Policy) WithDefaults() Policy {
	if p.EjectAfter <= 0 {
		p.EjectAfter = 3
	}
	if p.BaseEjection <= 0 {
		p.BaseEjection = 5 * time.Second
	}
	if p.MaxEjection <= 0 {
		p.MaxEjection = 2 * time.Minute
	}
	return p
}

// Health is the live state of a provider: requests in flight, consecutive failures and the
// end of its ejection. It is safe for concurrent use and takes no lock.
type Health struct {
	inflight     atomic.Int64
	failures     atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when not ejected
	lastFailure  atomic.Int64 // unix nanoseconds
}

// Begin counts a request that starts; End one that is over.
func (h *Health) Begin() { h.inflight.Add(1) }

// End counts a request that is over.
func (h *Health) End() { h.inflight.Add(-1) }

// InFlight returns the requests in flight.
func (h *Health) InFlight() int64 { return h.inflight.Load() }

// Succeeded clears the failure count and any ejection.
func (h *Health) Succeeded() {
	if h.failures.Load() != 0 {
		h.failures.Store(0)
	}
	if h.ejectedUntil.Load() != 0 {
		h.ejectedUntil.Store(0)
	}
}

// Failed records a failure. A provider is ejected when the upstream asked for a pause with
// Retry-After (for that long, capped), or after p.EjectAfter consecutive failures (for a
// cool-down that doubles with each further failure). It returns the ejection it started, or 0.
func (h *Health) Failed(now time.Time, retryAfter time.Duration, p Policy) time.Duration {
	n := int(h.failures.Add(1))
	h.lastFailure.Store(now.UnixNano())
	var d time.Duration
	switch {
	case retryAfter > 0:
		d = min(retryAfter, p.MaxEjection)
	case n >= p.EjectAfter:
		d = p.BaseEjection
		for i := p.EjectAfter; i < n && d < p.MaxEjection; i++ {
			d *= 2
		}
		d = min(d, p.MaxEjection)
	default:
		return 0
	}
	h.ejectedUntil.Store(now.Add(d).UnixNano())
	return d
}

// Ejected reports whether the provider is out of rotation at now.
func (h *Health) Ejected(now time.Time) bool {
	until := h.ejectedUntil.Load()
	return until != 0 && now.UnixNano() < until
}

// ConsecutiveFailures returns the failures since the last success.
func (h *Health) ConsecutiveFailures() int { return int(h.failures.Load()) }

// Pick chooses a backend for the next attempt of a request, skipping the backends whose bit is
// set in tried. Among the backends that are not ejected it draws two by weight and takes the
// one with fewer requests in flight per unit of weight (power of two choices). When every
// untried backend is ejected it returns the one that failed longest ago rather than none.
// It returns false when every backend has been tried.
func (e *Entity) Pick(now time.Time, tried uint64) (int, bool) {
	n := len(e.Backends)
	total, eligible, oldest := 0, 0, -1
	var oldestFailure int64
	for i := 0; i < n; i++ {
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
		total += e.Backends[i].Weight
		eligible++
	}
	if eligible == 0 {
		return oldest, oldest >= 0
	}
	a := e.drawWeighted(now, tried, total, -1)
	if a < 0 {
		// Every eligible backend was ejected by another request meanwhile.
		return oldest, oldest >= 0
	}
	if eligible == 1 {
		return a, true
	}
	b := e.drawWeighted(now, tried, total-e.Backends[a].Weight, a)
	if b < 0 {
		return a, true
	}
	ba, bb := &e.Backends[a], &e.Backends[b]
	// Fewer in flight per weight wins: compare ia/wa with ib/wb without dividing.
	la := ba.Provider.Health.InFlight() * int64(bb.Weight)
	lb := bb.Provider.Health.InFlight() * int64(ba.Weight)
	if lb < la {
		return b, true
	}
	return a, true
}

// drawWeighted draws an eligible backend with probability proportional to its weight, leaving
// out skip. total is the weight of the backends it may draw.
func (e *Entity) drawWeighted(now time.Time, tried uint64, total, skip int) int {
	r := 0
	if total > 1 {
		r = rand.IntN(total)
	}
	last := -1
	for i := range e.Backends {
		if i == skip || tried&(1<<i) != 0 || e.Backends[i].Provider.Health.Ejected(now) {
			continue
		}
		last = i
		if r < e.Backends[i].Weight {
			return i
		}
		r -= e.Backends[i].Weight
	}
	return last
}
