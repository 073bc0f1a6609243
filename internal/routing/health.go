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

// Health is the live state of a provider: requests in flight, consecutive failures, the end
// of its ejection, and the load signals the picker weighs (see signals.go). It is safe for
// concurrent use and takes no lock.
type Health struct {
	inflight     atomic.Int64
	streams      atomic.Int64
	failures     atomic.Int32
	ejectedUntil atomic.Int64 // unix nanoseconds; 0 when not ejected
	lastFailure  atomic.Int64 // unix nanoseconds
	signals      signals
}

// Begin counts a request that starts; End one that is over.
func (h *Health) Begin() { h.inflight.Add(1) }

// End counts a request that is over.
func (h *Health) End() { h.inflight.Add(-1) }

// InFlight returns the requests in flight.
func (h *Health) InFlight() int64 { return h.inflight.Load() }

// StreamBegin counts an event stream that starts reaching a client; StreamEnd one that is over.
func (h *Health) StreamBegin() { h.streams.Add(1) }

// StreamEnd counts an event stream that is over.
func (h *Health) StreamEnd() { h.streams.Add(-1) }

// Streams returns the event streams open.
func (h *Health) Streams() int64 { return h.streams.Load() }

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
