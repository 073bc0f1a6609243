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

package jsonfield

// Prefix finds the top-level members of a JSON object while it arrives, so that a member
// near the start (the gateway's `model`) is known before the rest is read. Each call to Next
// gets a longer prefix of the same document and returns the members that it holds whole and
// that earlier calls did not return. It resumes where the last whole member ended, so a
// document is scanned about once however many calls it takes, except for the member being
// received, which is scanned again at each call: call Next when the prefix has grown
// enough (doubled, say), not at every read.
//
// Prefix reports no syntax errors: a member it cannot scan yet may be cut short or invalid,
// and only the whole document tells which; validate it with Members once it is complete.
type Prefix struct {
	pos   int // where to resume: just after '{', or just after a whole member
	state prefixState
}

type prefixState uint8

const (
	prefixStart       prefixState = iota // before '{'
	prefixFirstMember                    // after '{': a member or '}'
	prefixNextMember                     // after a member: ',' or '}'
	prefixDone                           // after the closing '}', or not an object
)

// Next appends to dst the members that data, a prefix of a JSON document, holds whole beyond
// those returned before. A member is whole when a byte follows its value, so that a number
// cut short is not taken for a whole one.
func (p *Prefix) Next(dst []Member, data []byte) []Member {
	s := scanner{data: data, pos: p.pos}
	if p.state == prefixStart {
		s.skipSpace()
		switch {
		case s.pos >= len(data):
			return dst
		case data[s.pos] != '{':
			p.state = prefixDone
			return dst
		}
		p.pos, p.state = s.pos+1, prefixFirstMember
	}
	for p.state != prefixDone {
		s.pos = p.pos
		s.skipSpace()
		switch {
		case s.pos >= len(data):
			return dst
		case data[s.pos] == '}':
			p.state = prefixDone
			return dst
		case p.state == prefixNextMember:
			if data[s.pos] != ',' {
				p.state = prefixDone // not JSON: Members will say why
				return dst
			}
			s.pos++
			s.skipSpace()
		}
		var m Member
		m.KeyStart = s.pos
		if s.peek() != '"' || s.str() != nil {
			return dst
		}
		m.KeyEnd = s.pos
		s.skipSpace()
		if s.peek() != ':' {
			return dst
		}
		s.pos++
		s.skipSpace()
		m.ValueStart = s.pos
		if s.value(1) != nil || s.pos >= len(data) {
			return dst
		}
		m.ValueEnd = s.pos
		dst = append(dst, m)
		p.pos, p.state = s.pos, prefixNextMember
	}
	return dst
}
