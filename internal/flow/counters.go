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

// counters are a queue's virtual token counters per workspace: base is what the last exchange
// with the other replicas gave (every replica's charges), delta what this replica charged
// since, lift what this replica raised the counter by (lift). Lifts stay with the replica that
// made them: each judges from what it knows, and replicas that lifted one workspace at once
// would otherwise add their lifts up.
type counters map[string]*counter

type counter struct{ base, delta, lift float64 }

func (c counters) value(ws string) float64 {
	if v := c[ws]; v != nil {
		return v.base + v.delta + v.lift
	}
	return 0
}

func (c counters) raise(ws string, d float64) {
	c.add(ws, 0)
	c[ws].lift += d
}

func (c counters) add(ws string, d float64) {
	v := c[ws]
	if v == nil {
		v = &counter{}
		c[ws] = v
	}
	v.delta += d
}

// deltas returns what this replica added since the last exchange, to send.
func (q *Queue) deltas() map[string]float64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out map[string]float64
	for ws, v := range q.counters {
		if v.delta != 0 {
			if out == nil {
				out = make(map[string]float64, len(q.counters))
			}
			out[ws] = v.delta
		}
	}
	return out
}

// merge takes the totals of every replica after sent was added to them. What this replica
// added while the exchange ran stays in delta; a workspace the store no longer holds (its
// counters expired) starts again from its delta.
func (q *Queue) merge(sent, totals map[string]float64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for ws, v := range q.counters {
		v.delta -= sent[ws]
		v.base = totals[ws]
	}
	for ws, total := range totals {
		if q.counters[ws] == nil {
			q.counters[ws] = &counter{base: total}
		}
	}
}
