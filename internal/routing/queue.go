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
	"slices"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Defaults of a queue that neither an entity nor its providers bound.
const (
	DefaultMaxQueueTime   = 5 * time.Second
	DefaultMaxQueueLength = 1024
)

// QueueSpec bounds the wait for capacity; nil fields are unset.
type QueueSpec struct {
	MaxTime   *time.Duration
	MaxLength *int
}

// Queue is the effective bound of an entity's requests.
type Queue struct {
	MaxTime   time.Duration
	MaxLength int
}

// queueOf is an entity's bounds: its own fields, else the smallest its providers set, else
// the defaults.
func queueOf(own QueueSpec, backends []Backend) Queue {
	q := Queue{MaxTime: -1, MaxLength: -1}
	if own.MaxTime != nil {
		q.MaxTime = max(*own.MaxTime, 0)
	}
	if own.MaxLength != nil {
		q.MaxLength = max(*own.MaxLength, 0)
	}
	for _, b := range backends {
		ps := b.Provider.queue
		if own.MaxTime == nil && ps.MaxTime != nil && (q.MaxTime < 0 || *ps.MaxTime < q.MaxTime) {
			q.MaxTime = max(*ps.MaxTime, 0)
		}
		if own.MaxLength == nil && ps.MaxLength != nil && (q.MaxLength < 0 || *ps.MaxLength < q.MaxLength) {
			q.MaxLength = max(*ps.MaxLength, 0)
		}
	}
	if q.MaxTime < 0 {
		q.MaxTime = DefaultMaxQueueTime
	}
	if q.MaxLength < 0 {
		q.MaxLength = DefaultMaxQueueLength
	}
	return q
}

// poolOf names the pool of providers an entity's requests wait for: a hash of their ids, so
// that the entities of every workspace that resolve to the same providers (such as the system
// workspace's) share one queue, and one fair share, on every replica.
func poolOf(backends []Backend) string {
	ids := make([]string, len(backends))
	for i, b := range backends {
		ids[i] = b.Provider.ID
	}
	slices.Sort(ids)
	return fmt.Sprintf("%016x", xxhash.Sum64String(strings.Join(ids, ",")))
}

// ShareWeight returns the fair-share weight of workspace ws: what its namespace's
// ShareWeightAnnotation says, default 1.
func (t *Table) ShareWeight(ws string) float64 {
	if w, ok := t.shareWeights[ws]; ok {
		return w
	}
	return 1
}

// ShareWeightAnnotation on a workspace's namespace sets its fair-share weight: a number from
// 0.001 to 1000, default 1.
const ShareWeightAnnotation = "inference.infergate.dev/share-weight"
