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

package gateway

import (
	"encoding/binary"

	"github.com/cespare/xxhash/v2"

	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/routing"
)

// promptMembers are the members of a request body that make up its prompt, in the order a
// model server reads them: the Responses API's instructions, then chat messages, Responses
// input items, or a completion prompt.
var promptMembers = [...]string{"instructions", "messages", "input", "prompt"}

// promptBlocks appends to dst the chained hashes of the full blocks of a request's prompt:
// its prompt members' JSON text, in promptMembers' order, cut into blocks of
// routing.PrefixBlockBytes, each block's hash covering every byte before it, as a model
// server's prefix cache keys its blocks. Two prompts share their first n blocks exactly when
// they share their first n blocks of text; a byte changed changes every block from its own
// on. At most routing.MaxPrefixBlocks blocks are hashed; a trailing partial block is not.
func promptBlocks(dst []uint64, body []byte, members []jsonfield.Member) []uint64 {
	var c chainer
	c.blocks = dst[:0]
	for _, name := range promptMembers {
		if m, ok := jsonfield.Find(body, members, name); ok {
			if !c.write(m.Value(body)) {
				break
			}
		}
	}
	return c.blocks
}

// chainer cuts a stream of bytes into blocks and chains their hashes.
type chainer struct {
	d      xxhash.Digest
	fill   int // bytes of the current block written to d
	prev   uint64
	blocks []uint64
}

// write hashes b's bytes into blocks, and reports whether more blocks may follow.
func (c *chainer) write(b []byte) bool {
	for len(b) > 0 {
		if len(c.blocks) == routing.MaxPrefixBlocks {
			return false
		}
		if c.fill == 0 && len(b) >= routing.PrefixBlockBytes {
			// A whole block at hand, the common case: no copy into the digest's buffer.
			c.emit(mixBlock(c.prev, xxhash.Sum64(b[:routing.PrefixBlockBytes])))
			b = b[routing.PrefixBlockBytes:]
			continue
		}
		if c.fill == 0 {
			c.d.Reset()
		}
		k := min(len(b), routing.PrefixBlockBytes-c.fill)
		_, _ = c.d.Write(b[:k])
		b, c.fill = b[k:], c.fill+k
		if c.fill == routing.PrefixBlockBytes {
			c.fill = 0
			c.emit(mixBlock(c.prev, c.d.Sum64()))
		}
	}
	return len(c.blocks) < routing.MaxPrefixBlocks
}

func (c *chainer) emit(h uint64) {
	c.prev = h
	c.blocks = append(c.blocks, h)
}

// mixBlock chains a block's own hash to the hash of the blocks before it.
func mixBlock(prev, block uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], prev)
	binary.LittleEndian.PutUint64(b[8:], block)
	return max(xxhash.Sum64(b[:]), 1)
}

// setPrefix hashes the prompt blocks of a request to a CacheAware entity with more than one
// provider, or to a virtual model that keeps conversations on one target or has such a
// target; other requests do without the hashing.
func (pr *proxyRequest) setPrefix() {
	if e := pr.entity; e != nil && pr.body != nil && len(pr.members) > 0 && needsPrefix(e) {
		pr.blocks = promptBlocks(pr.blocks, pr.body.b, pr.members)
	}
}

func needsPrefix(e *routing.Entity) bool {
	if e.Balancing == routing.CacheAware && len(e.Backends) > 1 || e.Affinity == routing.AffinityConversation {
		return true
	}
	for t := range e.OtherTargets() {
		if t.Balancing == routing.CacheAware && len(t.Backends) > 1 {
			return true
		}
	}
	return false
}

// conversationKey keeps a conversation on one target of a virtual model (Conversation
// affinity): it hashes what stays the same from turn to turn, the instructions and the chat
// messages (or Responses input items) up to and including the first user message, or a
// Responses input that is one text. False for a body with none of these, such as a completion
// prompt.
func conversationKey(body []byte, members []jsonfield.Member) (uint64, bool) {
	var d xxhash.Digest
	d.Reset()
	found := false
	if m, ok := jsonfield.Find(body, members, "instructions"); ok {
		_, _ = d.Write(m.Value(body))
		found = true
	}
	for _, name := range [...]string{"messages", "input"} {
		m, ok := jsonfield.Find(body, members, name)
		if !ok {
			continue
		}
		v := m.Value(body)
		if len(v) > 0 && v[0] == '"' {
			_, _ = d.Write(v)
			return d.Sum64(), true
		}
		for el := range jsonfield.Elements(v) {
			_, _ = d.Write(el)
			found = true
			if role, ok := jsonfield.Field(el, "role"); ok {
				if r, ok := jsonfield.StringValue(role); ok && string(r) == "user" {
					break
				}
			}
		}
		break
	}
	return d.Sum64(), found
}
