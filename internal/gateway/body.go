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
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// bodyBuf holds a request body read into memory. Several readers may share it (one per
// attempt); it returns to the pool when the last of them and the handler let go of it.
type bodyBuf struct {
	b    []byte
	refs atomic.Int32
	// budget, when set, holds reserved bytes for b's capacity until the last release.
	budget   *budget
	reserved int64
}

const (
	initialBodyCap = 4 << 10
	maxPooledBody  = 1 << 20
)

var bodyPool = sync.Pool{New: func() any { return &bodyBuf{b: make([]byte, 0, initialBodyCap)} }}

// newBodyBuf returns a buffer whose capacity is taken from bgt (nil: unbounded).
func newBodyBuf(bgt *budget) *bodyBuf {
	bb := bodyPool.Get().(*bodyBuf)
	bb.refs.Store(1)
	bb.budget, bb.reserved = bgt, 0
	return bb
}

func (bb *bodyBuf) retain() { bb.refs.Add(1) }

func (bb *bodyBuf) release() {
	if bb.refs.Add(-1) != 0 {
		return
	}
	if bb.budget != nil {
		bb.budget.release(bb.reserved)
		bb.budget, bb.reserved = nil, 0
	}
	if cap(bb.b) <= maxPooledBody {
		bb.b = bb.b[:0]
		bodyPool.Put(bb)
	}
}

// grow makes room for at least n more bytes, within the budget. Growth doubles, as append's
// does, so that the budget is asked a few times per body, not at every read.
func (bb *bodyBuf) grow(n int) bool {
	if cap(bb.b)-len(bb.b) >= n {
		return bb.reserve(cap(bb.b))
	}
	size := max(2*cap(bb.b), len(bb.b)+n)
	if !bb.reserve(size) { // before allocating: a refused body costs nothing
		return false
	}
	b := make([]byte, len(bb.b), size)
	copy(b, bb.b)
	bb.b = b
	return true
}

// account reserves the buffer's capacity in the budget, or reports false.
func (bb *bodyBuf) account() bool { return bb.reserve(cap(bb.b)) }

// reserve makes the budget hold size bytes for the buffer, or reports false.
func (bb *bodyBuf) reserve(size int) bool {
	if bb.budget == nil {
		return true
	}
	delta := int64(size) - bb.reserved
	if delta <= 0 {
		return true
	}
	if !bb.budget.reserve(delta) {
		return false
	}
	bb.reserved += delta
	return true
}

// errTooLarge is returned by readBody past the limit.
var errTooLarge = errors.New("body too large")

// readBody reads the whole request body, refusing more than limit bytes, and holding its
// bytes in bgt.
func readBody(r *http.Request, limit int64, bgt *budget) (*bodyBuf, error) {
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	bb := newBodyBuf(bgt)
	if r.Body == nil || r.Body == http.NoBody {
		return bb, nil
	}
	if !bb.grow(int(max(r.ContentLength, 0))) {
		bb.release()
		return nil, errOverBudget
	}
	for {
		if len(bb.b) == cap(bb.b) && !bb.grow(1) {
			bb.release()
			return nil, errOverBudget
		}
		n, err := r.Body.Read(bb.b[len(bb.b):cap(bb.b)])
		bb.b = bb.b[:len(bb.b)+n]
		if int64(len(bb.b)) > limit {
			bb.release()
			return nil, errTooLarge
		}
		if err == io.EOF {
			return bb, nil
		}
		if err != nil {
			bb.release()
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, errTooLarge
			}
			return nil, err
		}
	}
}

// segments is a request or response body made of byte slices, written without copying them
// together. It holds a reference to the buffer the slices point into and releases it on Close.
// A mutex keeps Close from releasing the buffer while a Read copies from it, since an
// http.Transport may close a request body from another goroutine.
type segments struct {
	mu     sync.Mutex
	segs   [][]byte // never modified, so that several readers can share it
	i, off int      // read position: segs[i][off:]
	buf    *bodyBuf
	closed bool
	// onClose, if set, runs once at Close.
	onClose func()
}

func newSegments(segs [][]byte, buf *bodyBuf) *segments {
	if buf != nil {
		buf.retain()
	}
	return &segments{segs: segs, buf: buf}
}

func segmentsLen(segs [][]byte) int64 {
	var n int64
	for _, s := range segs {
		n += int64(len(s))
	}
	return n
}

func (s *segments) Read(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	n := 0
	for s.i < len(s.segs) && n < len(p) {
		c := copy(p[n:], s.segs[s.i][s.off:])
		n += c
		s.off += c
		if s.off == len(s.segs[s.i]) {
			s.i, s.off = s.i+1, 0
		}
	}
	if s.i == len(s.segs) {
		return n, io.EOF
	}
	return n, nil
}

// WriteTo writes the segments one after the other; io.Copy uses it.
func (s *segments) WriteTo(w io.Writer) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	var total int64
	for s.i < len(s.segs) {
		n, err := w.Write(s.segs[s.i][s.off:])
		total += int64(n)
		s.off += n
		if err != nil {
			return total, err
		}
		s.i, s.off = s.i+1, 0
	}
	return total, nil
}

func (s *segments) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if s.buf != nil {
		s.buf.release()
		s.buf = nil
	}
	if s.onClose != nil {
		s.onClose()
	}
	return nil
}
