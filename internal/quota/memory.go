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

package quota

import (
	"context"
	"sync"
	"time"
)

// keep is how long a window's counter outlives its end: long enough to settle the requests
// it admitted that are still streaming.
const keep = 10 * time.Minute

// Memory is the in-process store: the same decisions as the Redis script, on this process's
// clock. It is exact for one replica.
type Memory struct {
	// Now is the clock. Default time.Now.
	Now func() time.Time

	mu       sync.Mutex
	counters map[string]memCounter
	swept    time.Time
}

type memCounter struct {
	v       int64
	expires time.Time
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory { return &Memory{Now: time.Now, counters: map[string]memCounter{}} }

// Reserve implements Store.
func (m *Memory) Reserve(_ context.Context, r *Request, divisor int64, d *Decision) error {
	n := len(r.Counters)
	keys := make([]string, n)
	maxes := make([]int64, n)
	used := make([]int64, n)
	d.States = d.States[:0]
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.Now()
	m.sweep(now)
	for i := range r.Counters {
		c := &r.Counters[i]
		start, end := c.Budget.Window(c.Limit, now)
		keys[i] = Key(c.Key, start)
		maxes[i] = c.Limit.Max / divisor
		if e, ok := m.counters[keys[i]]; ok && now.Before(e.expires) {
			used[i] = e.v
		}
		d.States = append(d.States, State{Start: start, End: end, Used: used[i]})
	}
	output, refused := decide(r, maxes, used)
	d.Now, d.Refused = now, refused
	if refused >= 0 {
		d.Allowed, d.Output = false, 0
		d.RetryAfter = retryAfter(r, maxes, used, d.States, now, output)
		return nil
	}
	d.Allowed, d.Output = true, output
	d.reserved = d.reserved[:0]
	for i := range r.Counters {
		add := take(&r.Counters[i], r.Input, output)
		d.reserved = append(d.reserved, add)
		e := m.counters[keys[i]]
		e.v += add
		e.expires = d.States[i].End.Add(keep)
		m.counters[keys[i]] = e
		d.States[i].Used = e.v
	}
	return nil
}

// retryAfter is when every counter that refuses has a new window.
func retryAfter(r *Request, maxes, used []int64, states []State, now time.Time, output int64) time.Duration {
	var wait time.Duration
	for i := range r.Counters {
		if refuses(r, i, maxes[i], used[i]) {
			wait = max(wait, states[i].End.Sub(now))
		}
	}
	return wait
}

// Settle implements Store.
func (m *Memory) Settle(_ context.Context, keys []string, deltas []int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.Now()
	for i, k := range keys {
		if e, ok := m.counters[k]; ok && now.Before(e.expires) {
			e.v += deltas[i]
			m.counters[k] = e
		}
	}
	return nil
}

// Used implements Store.
func (m *Memory) Used(_ context.Context, keys []string) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.Now()
	out := make([]int64, len(keys))
	for i, k := range keys {
		if e, ok := m.counters[k]; ok && now.Before(e.expires) {
			out[i] = e.v
		}
	}
	return out, nil
}

// Ping implements Store: the process's memory always answers.
func (m *Memory) Ping(context.Context) error { return nil }

// Len returns the counters held, expired ones included until the next sweep.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.counters)
}

// sweep drops expired counters, once a minute at most.
func (m *Memory) sweep(now time.Time) {
	if now.Sub(m.swept) < time.Minute {
		return
	}
	m.swept = now
	for k, e := range m.counters {
		if !now.Before(e.expires) {
			delete(m.counters, k)
		}
	}
}
