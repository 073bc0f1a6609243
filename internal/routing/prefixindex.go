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
	"slices"
	"sync"
	"unsafe"
)

// DefaultPrefixIndexBlocks bounds each provider's prefix index: 8,192 blocks of
// PrefixBlockBytes are 2 MiB of prompt text, about half a million tokens, what the KV cache of
// a large model server holds, at about 40 bytes a block.
const DefaultPrefixIndexBlocks = 8192

// PrefixBlockBytes is the size of a prompt block, in bytes of the request's prompt: about 64
// tokens, four of vLLM's blocks of 16.
const PrefixBlockBytes = 256

// MaxPrefixBlocks bounds the blocks of a prompt that are hashed and matched: 128 KiB, about
// 32,000 tokens. Past it, prompts that share that much are alike for routing.
const MaxPrefixBlocks = 512

// PrefixIndex is an approximate index of the prompt blocks a provider's model server
// probably holds in its prefix cache: the chained block hashes of the prompts this replica
// sent it, least recently sent evicted first, bounded. A prompt's blocks are touched last
// block first, so its first block is always the most recent: a server that holds block i
// of a prompt holds the blocks before it, and matching is a binary search. It is safe for
// concurrent use.
type PrefixIndex struct {
	mu       sync.Mutex
	capacity int32
	slots    map[uint64]int32 // block hash -> node
	nodes    []lruNode        // grows to capacity; head is the most recent
	head     int32
}

type lruNode struct {
	hash       uint64
	prev, next int32 // in the recency ring
}

// NewPrefixIndex returns an index of at most capacity blocks (DefaultPrefixIndexBlocks when
// capacity is not positive).
func NewPrefixIndex(capacity int) *PrefixIndex {
	if capacity <= 0 {
		capacity = DefaultPrefixIndexBlocks
	}
	return &PrefixIndex{capacity: int32(capacity), slots: map[uint64]int32{}, head: -1}
}

// Match returns how many leading blocks of the prompt the index holds.
func (x *PrefixIndex) Match(blocks []uint64) int {
	if x == nil || len(blocks) == 0 {
		return 0
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	// The largest n such that blocks[n-1] is held (held blocks form a prefix).
	lo, hi := 0, len(blocks)
	for lo < hi {
		mid := int(uint(lo+hi+1) >> 1)
		if _, ok := x.slots[blocks[mid-1]]; ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// Add records that the prompt's blocks were sent to the provider, evicting the least
// recently sent blocks past the bound.
func (x *PrefixIndex) Add(blocks []uint64) {
	if x == nil || len(blocks) == 0 {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for i := len(blocks) - 1; i >= 0; i-- {
		x.touch(blocks[i])
	}
}

// touch makes h the most recent block, adding it in place of the least recent when full.
func (x *PrefixIndex) touch(h uint64) {
	if n, ok := x.slots[h]; ok {
		if n != x.head {
			x.unlink(n)
			x.pushFront(n)
		}
		return
	}
	var n int32
	if int32(len(x.nodes)) < x.capacity {
		if len(x.nodes) == cap(x.nodes) { // grow by doubling, never past the bound
			x.nodes = slices.Grow(x.nodes, min(max(cap(x.nodes), 64), int(x.capacity)-len(x.nodes)))
		}
		x.nodes = append(x.nodes, lruNode{})
		n = int32(len(x.nodes) - 1)
	} else {
		n = x.nodes[x.head].prev // the least recent
		delete(x.slots, x.nodes[n].hash)
		x.unlink(n)
	}
	x.nodes[n].hash = h
	x.slots[h] = n
	x.pushFront(n)
}

func (x *PrefixIndex) unlink(n int32) {
	node := &x.nodes[n]
	if node.next == n { // alone
		x.head = -1
		return
	}
	x.nodes[node.prev].next = node.next
	x.nodes[node.next].prev = node.prev
	if x.head == n {
		x.head = node.next
	}
}

func (x *PrefixIndex) pushFront(n int32) {
	node := &x.nodes[n]
	if x.head < 0 {
		node.prev, node.next, x.head = n, n, n
		return
	}
	head := &x.nodes[x.head]
	node.next, node.prev = x.head, head.prev
	x.nodes[head.prev].next = n
	head.prev = n
	x.head = n
}

// Len returns the blocks the index holds.
func (x *PrefixIndex) Len() int {
	if x == nil {
		return 0
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.slots)
}

// Bytes estimates the memory the index holds: its nodes, and its map's slots (a uint64 key, an
// int32 value and a control byte each) at a load of 5/8, about the mean of a Swiss table's
// between two growths.
func (x *PrefixIndex) Bytes() int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	const slot = int64(unsafe.Sizeof(struct {
		k uint64
		v int32
	}{})) + 1
	return int64(cap(x.nodes))*int64(unsafe.Sizeof(lruNode{})) + int64(len(x.slots))*slot*8/5
}
