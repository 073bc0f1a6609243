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

// Package jsonfield reads and replaces top-level fields of a JSON object in place, so that the
// gateway can find and rewrite `model` (and read `usage`) without decoding whole bodies into
// maps. Members validates the whole document strictly while it walks it, so a body it accepts
// is valid JSON.
package jsonfield

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"
)

// maxDepth bounds nesting, like encoding/json.
const maxDepth = 10000

// ErrNotObject is returned for valid JSON that is not an object.
var ErrNotObject = errors.New("the JSON value is not an object")

// SyntaxError tells where a document stops being JSON.
type SyntaxError struct {
	Offset int
	msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("%s at offset %d", e.msg, e.Offset)
}

// Member is one top-level member of an object, as byte offsets into the document.
type Member struct {
	// KeyStart is the offset of the key's opening quote; KeyEnd is just after its closing quote.
	KeyStart, KeyEnd int
	// ValueStart and ValueEnd delimit the value.
	ValueStart, ValueEnd int
}

// Key returns the key's bytes between the quotes, still escaped.
func (m Member) Key(data []byte) []byte { return data[m.KeyStart+1 : m.KeyEnd-1] }

// Value returns the value's bytes.
func (m Member) Value(data []byte) []byte { return data[m.ValueStart:m.ValueEnd] }

// KeyIs reports whether the member's key is name. It allocates only for keys with escapes.
func (m Member) KeyIs(data []byte, name string) bool {
	key := m.Key(data)
	if bytes.IndexByte(key, '\\') < 0 {
		return string(key) == name
	}
	s, ok := unquote(data[m.KeyStart:m.KeyEnd])
	return ok && s == name
}

// KeyEqualFold reports whether the member's key is name under Unicode case folding, as
// encoding/json matches keys to fields when no key matches exactly. It allocates only for keys
// with escapes.
func (m Member) KeyEqualFold(data []byte, name string) bool {
	key := m.Key(data)
	if bytes.IndexByte(key, '\\') < 0 {
		return bytes.EqualFold(key, []byte(name))
	}
	s, ok := unquote(data[m.KeyStart:m.KeyEnd])
	return ok && strings.EqualFold(s, name)
}

// Members validates data as a single JSON object and appends its top-level members to dst in
// document order. A later member with the same key as an earlier one is reported too; JSON
// decoders keep the last.
func Members(dst []Member, data []byte) ([]Member, error) {
	s := scanner{data: data}
	s.skipSpace()
	if s.pos >= len(data) {
		return dst, s.fail("unexpected end of JSON input")
	}
	if data[s.pos] != '{' {
		if err := s.value(0); err != nil {
			return dst, err
		}
		if err := s.end(); err != nil {
			return dst, err
		}
		return dst, ErrNotObject
	}
	s.pos++
	s.skipSpace()
	if s.peek() == '}' {
		s.pos++
		return dst, s.end()
	}
	for {
		s.skipSpace()
		if s.peek() != '"' {
			return dst, s.fail("expected a string key")
		}
		var m Member
		m.KeyStart = s.pos
		if err := s.str(); err != nil {
			return dst, err
		}
		m.KeyEnd = s.pos
		s.skipSpace()
		if s.peek() != ':' {
			return dst, s.fail("expected ':' after an object key")
		}
		s.pos++
		s.skipSpace()
		m.ValueStart = s.pos
		if err := s.value(1); err != nil {
			return dst, err
		}
		m.ValueEnd = s.pos
		dst = append(dst, m)
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return dst, s.end()
		default:
			return dst, s.fail("expected ',' or '}' after an object member")
		}
	}
}

// Find returns the last top-level member named name in an object's members.
func Find(data []byte, members []Member, name string) (Member, bool) {
	for i := len(members) - 1; i >= 0; i-- {
		if members[i].KeyIs(data, name) {
			return members[i], true
		}
	}
	return Member{}, false
}

// Elements yields the elements of the JSON array arr, in order, as byte slices of arr. arr must
// be valid JSON, such as a member's value from Members; for anything else, or after a syntax
// error, it yields nothing more.
func Elements(arr []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		s := scanner{data: arr}
		s.skipSpace()
		if s.peek() != '[' {
			return
		}
		s.pos++
		for {
			s.skipSpace()
			if s.peek() == ']' {
				return
			}
			start := s.pos
			if s.value(1) != nil || !yield(arr[start:s.pos]) {
				return
			}
			s.skipSpace()
			if s.peek() != ',' {
				return
			}
			s.pos++
		}
	}
}

// Field returns the value of the last top-level member named name of the JSON object obj,
// which must be valid JSON. It allocates nothing unless keys have escapes.
func Field(obj []byte, name string) ([]byte, bool) {
	s := scanner{data: obj}
	s.skipSpace()
	if s.peek() != '{' {
		return nil, false
	}
	s.pos++
	var found []byte
	ok := false
	for {
		s.skipSpace()
		if s.peek() != '"' {
			return found, ok
		}
		m := Member{KeyStart: s.pos}
		if s.str() != nil {
			return found, ok
		}
		m.KeyEnd = s.pos
		s.skipSpace()
		if s.peek() != ':' {
			return found, ok
		}
		s.pos++
		s.skipSpace()
		m.ValueStart = s.pos
		if s.value(1) != nil {
			return found, ok
		}
		m.ValueEnd = s.pos
		if m.KeyIs(obj, name) {
			found, ok = m.Value(obj), true
		}
		s.skipSpace()
		if s.peek() != ',' {
			return found, ok
		}
		s.pos++
	}
}

// StringValue returns the content of a JSON string value. Without escapes it returns a slice of
// data and allocates nothing.
func StringValue(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' {
		return nil, false
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner, true
	}
	s, ok := unquote(v)
	return []byte(s), ok
}

// IntValue parses a JSON number that is a non-negative integer.
func IntValue(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// AppendString appends s as a JSON string.
func AppendString(dst []byte, s string) []byte {
	b, _ := json.Marshal(s) // cannot fail for a string
	return append(dst, b...)
}

func unquote(v []byte) (string, bool) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}

type scanner struct {
	data []byte
	pos  int
}

func (s *scanner) fail(msg string) error { return &SyntaxError{Offset: s.pos, msg: msg} }

func (s *scanner) peek() byte {
	if s.pos < len(s.data) {
		return s.data[s.pos]
	}
	return 0
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// end accepts only whitespace after the top-level value.
func (s *scanner) end() error {
	s.skipSpace()
	if s.pos != len(s.data) {
		return s.fail("invalid character after top-level value")
	}
	return nil
}

func (s *scanner) value(depth int) error {
	if depth > maxDepth {
		return s.fail("exceeded max depth")
	}
	switch c := s.peek(); {
	case c == '{':
		return s.object(depth + 1)
	case c == '[':
		return s.array(depth + 1)
	case c == '"':
		return s.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case s.pos >= len(s.data):
		return s.fail("unexpected end of JSON input")
	default:
		return s.fail("invalid character looking for beginning of value")
	}
}

func (s *scanner) object(depth int) error {
	s.pos++ // {
	s.skipSpace()
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if s.peek() != '"' {
			return s.fail("expected a string key")
		}
		if err := s.str(); err != nil {
			return err
		}
		s.skipSpace()
		if s.peek() != ':' {
			return s.fail("expected ':' after an object key")
		}
		s.pos++
		s.skipSpace()
		if err := s.value(depth); err != nil {
			return err
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or '}' after an object member")
		}
	}
}

func (s *scanner) array(depth int) error {
	s.pos++ // [
	s.skipSpace()
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		s.skipSpace()
		if err := s.value(depth); err != nil {
			return err
		}
		s.skipSpace()
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or ']' after an array element")
		}
	}
}

func (s *scanner) str() error {
	s.pos++ // opening quote
	for s.pos < len(s.data) {
		c := s.data[s.pos]
		switch {
		case c == '"':
			s.pos++
			return nil
		case c == '\\':
			s.pos++
			switch s.peek() {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos++
			case 'u':
				s.pos++
				for i := 0; i < 4; i++ {
					if !isHex(s.peek()) {
						return s.fail("invalid \\u escape in string")
					}
					s.pos++
				}
			default:
				return s.fail("invalid escape in string")
			}
		case c < 0x20:
			return s.fail("invalid control character in string")
		default:
			s.pos++
		}
	}
	return s.fail("unexpected end of JSON input in string")
}

func (s *scanner) number() error {
	if s.peek() == '-' {
		s.pos++
	}
	switch c := s.peek(); {
	case c == '0':
		s.pos++
	case c >= '1' && c <= '9':
		s.digits()
	default:
		return s.fail("invalid number")
	}
	if s.peek() == '.' {
		s.pos++
		if !isDigit(s.peek()) {
			return s.fail("invalid number: digit expected after '.'")
		}
		s.digits()
	}
	if c := s.peek(); c == 'e' || c == 'E' {
		s.pos++
		if c := s.peek(); c == '+' || c == '-' {
			s.pos++
		}
		if !isDigit(s.peek()) {
			return s.fail("invalid number: digit expected in exponent")
		}
		s.digits()
	}
	return nil
}

func (s *scanner) digits() {
	for s.pos < len(s.data) && isDigit(s.data[s.pos]) {
		s.pos++
	}
}

func (s *scanner) literal(lit string) error {
	if len(s.data)-s.pos < len(lit) || string(s.data[s.pos:s.pos+len(lit)]) != lit {
		return s.fail("invalid literal")
	}
	s.pos += len(lit)
	return nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isHex(c byte) bool {
	return isDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}
