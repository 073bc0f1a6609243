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
	"fmt"
	"iter"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
)

// MaxTargets bounds the targets of a virtual model.
const MaxTargets = 16

// TargetSpec names an entity that serves a virtual model.
type TargetSpec struct {
	Workspace, Name string
	// Weight is the target's share of the requests of its order; values below 1 count as 1.
	Weight int
	// Order ranks fallbacks: the lowest first.
	Order int
	// Backends, when not nil, replace the target entity's own: a target that sets the served
	// name to send may use only the providers that serve it (the builder of the spec checks
	// that), each with that name.
	Backends []BackendSpec
	// TimeToFirstToken bounds the wait for a stream's first bytes from the target, past which
	// the request falls back to the next target; 0 for none.
	TimeToFirstToken time.Duration
}

// Affinity keeps related requests on one target of a virtual model.
type Affinity uint8

const (
	// AffinityNone draws each request's target by weight.
	AffinityNone Affinity = iota
	// AffinityCaller keeps a caller's requests on one target.
	AffinityCaller
	// AffinityConversation keeps the requests of one conversation on one target.
	AffinityConversation
)

// Target is an entity that serves a virtual model.
type Target struct {
	// Entity is the target: an entity with providers of its own (the virtual model itself for
	// a target naming it). For a target with backends of its own (TargetSpec.Backends), an
	// entity of the same name and settings on those backends, in no table.
	Entity *Entity
	Weight int
	Order  int
	// TimeToFirstToken bounds the wait for a stream's first bytes; 0 for none.
	TimeToFirstToken time.Duration

	seed uint64 // the target's identity in rendezvous hashing, the same on every replica
}

// Virtual tells whether e is a virtual model: it routes through targets.
func (e *Entity) Virtual() bool { return e.Targets != nil }

// Routable tells whether requests for e may go anywhere: it has a ready provider, or, for a
// virtual model, one of its targets has.
func (e *Entity) Routable() bool { return e.routable }

// OtherTargets yields the entities of a virtual model's targets besides itself: a target
// naming it (its own providers, under its served name or another) is its Backends, which
// the callers count apart.
func (e *Entity) OtherTargets() iter.Seq[*Entity] {
	return func(yield func(*Entity) bool) {
		for i := range e.Targets {
			if t := e.Targets[i].Entity; t.Key != e.Key && !yield(t) {
				return
			}
		}
	}
}

// ReadyProviders is the number of ready providers e routes to: its own, and for a virtual
// model those of its targets besides (a provider of two targets counts twice).
func (e *Entity) ReadyProviders() int {
	n := len(e.Backends)
	for t := range e.OtherTargets() {
		n += len(t.Backends)
	}
	return n
}

// PrefixKey is the key of a prompt's prefix that keeps it on one provider (CacheAware) or one
// target (a virtual model's Conversation affinity): the hash of its first affinityBlocks
// blocks, or of all of them when fewer. False for a prompt without a full block.
func PrefixKey(blocks []uint64) (uint64, bool) {
	if len(blocks) == 0 {
		return 0, false
	}
	return blocks[min(len(blocks), affinityBlocks)-1], true
}

// PlanTargets appends to dst the indexes of e's targets in the order a request tries them:
// by order, and within an order by weighted rendezvous hashing of key, so that the first is
// drawn by weight and the others follow as fallbacks. The same key gives the same plan on every
// replica: a random key draws per request, a caller's or a prompt's keeps them on one target.
// Targets whose entity has no ready provider, or does not serve the trailing path, are left
// out.
func (e *Entity) PlanTargets(dst []uint8, key uint64, trailing string) []uint8 {
	var score [MaxTargets]float64
	start := len(dst)
	for i := range e.Targets {
		t := &e.Targets[i]
		if len(t.Entity.Backends) == 0 || !t.Entity.AllowsPath(trailing) {
			continue
		}
		score[i] = rendezvous(key, t.seed, float64(t.Weight))
		dst = append(dst, uint8(i))
	}
	plan := dst[start:]
	// Targets are sorted by order; a stable sort by (order, score) keeps that.
	slices.SortStableFunc(plan, func(a, b uint8) int {
		ta, tb := &e.Targets[a], &e.Targets[b]
		if ta.Order != tb.Order {
			return ta.Order - tb.Order
		}
		switch {
		case score[a] < score[b]:
			return -1
		case score[a] > score[b]:
			return 1
		}
		return 0
	})
	return dst
}

// linkTargets resolves the targets of the virtual models in t, once every entity is built.
func (t *Table) linkTargets(specs []EntitySpec) []error {
	var errs []error
	virtual := map[Key]bool{}
	byKey := map[Key]*EntitySpec{}
	for i := range specs {
		k := Key{specs[i].Workspace, specs[i].Name}
		byKey[k] = &specs[i]
		if specs[i].Targets != nil {
			virtual[k] = true
		}
	}
	for i := range specs {
		es := &specs[i]
		if es.Targets == nil {
			continue
		}
		e := t.entities[Key{es.Workspace, es.Name}]
		e.Targets = make([]Target, 0, min(len(es.Targets), MaxTargets))
		for _, ts := range es.Targets {
			if len(e.Targets) == MaxTargets {
				errs = append(errs, fmt.Errorf("entity %s: more than %d targets, the rest are ignored", e.ID, MaxTargets))
				break
			}
			target, ok := t.entities[Key{ts.Workspace, ts.Name}]
			if !ok {
				errs = append(errs, fmt.Errorf("entity %s: target %s/%s is not in the table", e.ID, ts.Workspace, ts.Name))
				continue
			}
			if target != e && virtual[target.Key] {
				errs = append(errs, fmt.Errorf("entity %s: target %s is a virtual model itself", e.ID, target.ID))
				continue
			}
			if ts.Backends != nil {
				own := *byKey[target.Key]
				own.Backends, own.Targets = ts.Backends, nil
				var berrs []error
				target, berrs = t.newEntity(&own, nil)
				errs = append(errs, berrs...)
			}
			e.Targets = append(e.Targets, Target{Entity: target, Weight: max(ts.Weight, 1), Order: ts.Order, TimeToFirstToken: ts.TimeToFirstToken,
				seed: xxhash.Sum64String(target.ID)})
		}
		slices.SortStableFunc(e.Targets, func(a, b Target) int { return a.Order - b.Order })
	}
	for _, e := range t.entities {
		e.routable = len(e.Backends) > 0
		for i := range e.Targets {
			e.routable = e.routable || len(e.Targets[i].Entity.Backends) > 0
		}
	}
	return errs
}

// KeyOf hashes a string into a target plan's key.
func KeyOf(s string) uint64 { return xxhash.Sum64String(s) }
