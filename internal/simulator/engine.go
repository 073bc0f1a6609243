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

package simulator

import (
	"container/list"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// bytesPerToken is the simulator's tokenizer: one token per four bytes of prompt text, about
// what BPE tokenizers give for English.
const bytesPerToken = 4

// engine models a GPU model server the way vLLM runs one. At most maxSeqs sequences run at
// once; the others wait in a first-come, first-served queue, and so does a sequence whose KV
// cache blocks do not fit. A running sequence's prompt is prefilled on the one prefill lane,
// in time proportional to the prompt tokens the prefix cache does not hold; then its tokens
// come one by one, each step slower the more sequences run (the batch).
type engine struct {
	maxSeqs       int           // 0: no limit
	prefillPerTok time.Duration // per uncached prompt token
	decodePerSeq  time.Duration // added to each decode step per other running sequence
	blockSize     int           // tokens per KV cache block
	cache         *prefixCache  // nil: no prefix caching and no KV accounting

	prefill chan struct{} // the prefill lane: one prompt at a time

	mu      sync.Mutex
	running int
	queue   list.List // of *sequence, waiting for admission
}

func newEngine(opts Options) *engine {
	e := &engine{
		maxSeqs:       opts.MaxNumSeqs,
		prefillPerTok: opts.PrefillTimePerToken,
		decodePerSeq:  opts.DecodeTimePerSeq,
		blockSize:     opts.BlockSize,
		prefill:       make(chan struct{}, 1),
	}
	if e.blockSize <= 0 {
		e.blockSize = 16
	}
	if opts.KVCacheBlocks > 0 {
		e.cache = newPrefixCache(opts.KVCacheBlocks)
	}
	return e
}

// sequence is one request in the engine.
type sequence struct {
	blocks   []uint64 // chained hashes of the prompt's full blocks
	reserve  int      // blocks held for the rest of the prompt and the output
	hits     int      // prompt blocks found in the prefix cache at admission
	ready    chan struct{}
	elem     *list.Element
	admitted bool
}

// errTooLong refuses a sequence that could never fit in the KV cache.
var errTooLong = errors.New("the prompt and max_tokens need more KV cache blocks than the server has")

// newSequence splits a prompt of text into blocks and reserves room for n output tokens.
func (e *engine) newSequence(text string, n int) (*sequence, error) {
	tokens := promptTokens(text)
	s := &sequence{blocks: blockHashes(text, e.blockSize*bytesPerToken)}
	// The prompt's last partial block and the output take fresh blocks.
	s.reserve = ceilDiv(tokens+n, e.blockSize) - len(s.blocks)
	if e.cache != nil && len(s.blocks)+s.reserve > e.cache.total {
		return nil, errTooLong
	}
	return s, nil
}

// admit waits until s may run: a free sequence slot and room in the KV cache, after every
// sequence that came before it.
func (e *engine) admit(ctx context.Context, s *sequence) error {
	e.mu.Lock()
	if e.queue.Len() == 0 && e.fits(s) {
		e.start(s)
		e.mu.Unlock()
		return nil
	}
	s.ready = make(chan struct{})
	s.elem = e.queue.PushBack(s)
	e.mu.Unlock()
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		e.mu.Lock()
		admitted := s.admitted
		if !admitted {
			e.queue.Remove(s.elem)
			e.admitWaiting() // the head may have changed
		}
		e.mu.Unlock()
		if admitted {
			e.finish(s)
		}
		return ctx.Err()
	}
}

func (e *engine) fits(s *sequence) bool {
	if e.maxSeqs > 0 && e.running >= e.maxSeqs {
		return false
	}
	return e.cache == nil || e.cache.fits(s.blocks, s.reserve)
}

func (e *engine) start(s *sequence) {
	e.running++
	s.admitted = true
	if e.cache != nil {
		s.hits = e.cache.acquire(s.blocks, s.reserve)
	}
}

// finish releases a running sequence and admits those that now fit, in order.
func (e *engine) finish(s *sequence) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.running--
	if e.cache != nil {
		e.cache.release(s.blocks, s.reserve)
	}
	e.admitWaiting()
}

func (e *engine) admitWaiting() {
	for e.queue.Len() > 0 {
		head := e.queue.Front().Value.(*sequence)
		if !e.fits(head) {
			return
		}
		e.queue.Remove(head.elem)
		e.start(head)
		close(head.ready)
	}
}

// prefillFor holds the prefill lane for the prompt tokens the cache did not hold.
func (e *engine) prefillFor(ctx context.Context, tokens int) error {
	if e.prefillPerTok <= 0 || tokens <= 0 {
		return nil
	}
	select {
	case e.prefill <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-e.prefill }()
	return pause(ctx, time.Duration(tokens)*e.prefillPerTok)
}

// step is the time of one decode step with the current batch.
func (e *engine) step(base time.Duration) time.Duration {
	if e.decodePerSeq <= 0 {
		return base
	}
	e.mu.Lock()
	others := e.running - 1
	e.mu.Unlock()
	return base + time.Duration(max(others, 0))*e.decodePerSeq
}

// state returns the scheduler's gauges: sequences running and waiting, and the fraction of
// KV cache blocks that running sequences hold.
func (e *engine) state() (running, waiting int, kvUsage float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cache != nil {
		kvUsage = float64(e.cache.used) / float64(e.cache.total)
	}
	return e.running, e.queue.Len(), kvUsage
}

// prefixCache is a KV cache of prompt blocks, keyed by chained block hashes as vLLM's
// automatic prefix caching keys them: a block matches only when everything before it matches
// too. Blocks that running sequences hold are pinned; the others stay cached until their room
// is needed, least recently used first.
type prefixCache struct {
	total  int
	used   int // blocks held by running sequences, reservations included
	blocks map[uint64]*cacheBlock
	free   list.List // cached blocks nobody holds; the least recently used at the back
}

type cacheBlock struct {
	hash uint64
	refs int
	elem *list.Element // in free while refs == 0
}

func newPrefixCache(total int) *prefixCache {
	return &prefixCache{total: total, blocks: map[uint64]*cacheBlock{}}
}

// hits counts the leading blocks of hashes in the cache, and those of them nobody holds.
func (c *prefixCache) hits(hashes []uint64) (hits, unheld int) {
	for _, h := range hashes {
		b, ok := c.blocks[h]
		if !ok {
			break
		}
		hits++
		if b.refs == 0 {
			unheld++
		}
	}
	return hits, unheld
}

func (c *prefixCache) fits(hashes []uint64, reserve int) bool {
	hits, unheld := c.hits(hashes)
	return c.used+unheld+len(hashes)-hits+reserve <= c.total
}

// acquire pins the prompt's blocks, evicting cached ones to make room, and returns how many
// leading blocks were already cached.
func (c *prefixCache) acquire(hashes []uint64, reserve int) int {
	hits, _ := c.hits(hashes)
	for _, h := range hashes[:hits] {
		c.hold(c.blocks[h])
	}
	for need := len(hashes) - hits + reserve; c.used+c.free.Len()+need > c.total && c.free.Len() > 0; {
		b := c.free.Remove(c.free.Back()).(*cacheBlock)
		delete(c.blocks, b.hash)
	}
	for _, h := range hashes[hits:] {
		if b, ok := c.blocks[h]; ok { // cached after a block that was evicted
			c.hold(b)
			continue
		}
		c.blocks[h] = &cacheBlock{hash: h, refs: 1}
		c.used++
	}
	c.used += reserve
	return hits
}

func (c *prefixCache) hold(b *cacheBlock) {
	if b.refs == 0 {
		c.free.Remove(b.elem)
		b.elem = nil
		c.used++
	}
	b.refs++
}

// release unpins a finished sequence's blocks, last block first, so that a prompt's tail is
// evicted before its head.
func (c *prefixCache) release(hashes []uint64, reserve int) {
	for i := len(hashes) - 1; i >= 0; i-- {
		b := c.blocks[hashes[i]]
		if b.refs--; b.refs == 0 {
			b.elem = c.free.PushFront(b)
			c.used--
		}
	}
	c.used -= reserve
}

// hashSeed is the simulator's block hash seed; hashes never leave the process.
var hashSeed = maphash.MakeSeed()

// blockHashes returns the chained hashes of text's full blocks of size bytes.
func blockHashes(text string, size int) []uint64 {
	n := len(text) / size
	hashes := make([]uint64, n)
	var prev [8]byte
	for i := range n {
		var h maphash.Hash
		h.SetSeed(hashSeed)
		h.Write(prev[:])
		h.WriteString(text[i*size : (i+1)*size])
		hashes[i] = h.Sum64()
		binary.LittleEndian.PutUint64(prev[:], hashes[i])
	}
	return hashes
}

func promptTokens(text string) int { return max(ceilDiv(len(text), bytesPerToken), 1) }

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// promptText renders what a request asks the model to read, as a chat template would: each
// message's role and text, or the completion prompt.
func promptText(req *chatRequest) string {
	var b strings.Builder
	for _, m := range req.Messages {
		b.WriteString("<|")
		b.WriteString(m.Role)
		b.WriteString("|>")
		writeContent(&b, m.Content)
		b.WriteByte('\n')
	}
	writeContent(&b, req.Prompt)
	return b.String()
}

// writeContent appends a content value: a string, or an array of strings or text parts.
func writeContent(b *strings.Builder, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		b.WriteString(s)
		return
	}
	var parts []json.RawMessage
	if json.Unmarshal(raw, &parts) != nil {
		return
	}
	for _, p := range parts {
		var part struct {
			Text string `json:"text"`
		}
		if json.Unmarshal(p, &s) == nil {
			b.WriteString(s)
		} else if json.Unmarshal(p, &part) == nil {
			b.WriteString(part.Text)
		}
	}
}

// pause waits d unless ctx ends first.
func pause(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
