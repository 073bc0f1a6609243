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
	"github.com/cespare/xxhash/v2"

	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/routing"
)

// Bounds of the prompt prefix that keys CacheAware routing.
const (
	// prefixMessages bounds the messages (or Responses API input items) hashed.
	prefixMessages = 16
	// prefixStringBytes is how much of a prompt given as a string is hashed.
	prefixStringBytes = 512
)

// prefixKey returns the key of the prompt prefix of a request whose body members are known:
// the hash of the messages up to and including the first user message (the system prompt and
// the conversation's opening), for chat completions; of the instructions and the input items up
// to the first user one, for the Responses API; of the first 512 bytes of a prompt given as a
// string. Every turn of a conversation shares that prefix, so every turn gets the same key, on
// every replica. It returns 0 when the body has none of these.
func prefixKey(body []byte, members []jsonfield.Member) uint64 {
	var d xxhash.Digest
	d.Reset()
	n := 0
	if v, ok := value(body, members, "messages"); ok {
		n += hashOpening(&d, v)
	}
	if v, ok := value(body, members, "instructions"); ok {
		n += write(&d, v)
	}
	for _, name := range [...]string{"input", "prompt"} {
		if v, ok := value(body, members, name); ok {
			if len(v) > 0 && v[0] == '[' {
				n += hashOpening(&d, v)
			} else {
				n += write(&d, v[:min(len(v), prefixStringBytes)])
			}
		}
	}
	if n == 0 {
		return 0
	}
	return max(d.Sum64(), 1)
}

func value(body []byte, members []jsonfield.Member, name string) ([]byte, bool) {
	m, ok := jsonfield.Find(body, members, name)
	if !ok {
		return nil, false
	}
	return m.Value(body), true
}

// hashOpening hashes the elements of a JSON array up to and including the first whose role is
// "user", and returns the bytes hashed.
func hashOpening(d *xxhash.Digest, arr []byte) int {
	n, i := 0, 0
	for elem := range jsonfield.Elements(arr) {
		n += write(d, elem)
		if i++; i == prefixMessages {
			break
		}
		if role, ok := jsonfield.Field(elem, "role"); ok && string(role) == `"user"` {
			break
		}
	}
	return n
}

func write(d *xxhash.Digest, b []byte) int {
	_, _ = d.Write(b)
	return len(b)
}

// setPrefix keys a request to a CacheAware entity with more than one provider by its prompt
// prefix; other requests do without the hashing.
func (pr *proxyRequest) setPrefix() {
	if e := pr.entity; e != nil && e.Balancing == routing.CacheAware && len(e.Backends) > 1 && pr.body != nil && len(pr.members) > 0 {
		pr.prefix = prefixKey(pr.body.b, pr.members)
	}
}
