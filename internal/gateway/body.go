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
	"math"
	"net/http"
	"sync"
	"sync/atomic"
)

// bodyBuf holds a request body read into memory. Several readers may share it (one per
// attempt); it returns to the pool when the last of them and the handler let go of it.
type bodyBuf struct {
	b    []byte
	refs atomic.Int32
	// budget, when set, holds reserved bytes for b until the last release: room for what has
	// arrived, grown as more arrives, never for what a client announced.
	budget   *budget
	caller   string // whose share of the budget holds them; "" for none
	reserved int64
}

const (
	initialBodyCap = 4 << 10
	maxPooledBody  = 1 << 20
)

var bodyPool = sync.Pool{New: func() any { return &bodyBuf{b: make([]byte, 0, initialBodyCap)} }}

// newBodyBuf returns a buffer whose bytes are taken from bgt (nil: unbounded), and from the
// share of caller there.
func newBodyBuf(bgt *budget, caller string) *bodyBuf {
	bb := bodyPool.Get().(*bodyBuf)
	bb.refs.Store(1)
	bb.budget, bb.caller, bb.reserved = bgt, caller, 0
	return bb
}

func (bb *bodyBuf) retain() { bb.refs.Add(1) }

func (bb *bodyBuf) release() {
	if bb.refs.Add(-1) != 0 {
		return
	}
	if bb.budget != nil {
		bb.budget.release(bb.caller, bb.reserved)
		bb.budget, bb.caller, bb.reserved = nil, "", 0
	}
	if cap(bb.b) <= maxPooledBody {
		bb.b = bb.b[:0]
		bodyPool.Put(bb)
	}
}

// free returns the room after the bytes held that is allocated and reserved: where the next
// read goes. It is empty until room makes some.
func (bb *bodyBuf) free() []byte {
	end := cap(bb.b)
	if bb.budget != nil {
		end = int(min(int64(end), bb.reserved))
	}
	return bb.b[len(bb.b):end]
}

// room makes free not empty, reserving more of the budget as the bytes held grow: twice what
// is held; or, with hint (an announced length, when positive), all of it once a quarter has
// arrived, so that a large body is not copied over and over. The reservation follows the bytes
// that arrived, four times them at most, so a client that announces a large body and sends
// little holds little. It returns errOverBudget or errOverShare when the budget cannot give
// the room.
func (bb *bodyBuf) room(hint int64) error {
	if len(bb.free()) > 0 {
		return nil
	}
	size := max(2*len(bb.b), initialBodyCap)
	if hint > 0 {
		whole := int(min(hint, math.MaxInt32)) + 1 // +1: room to see the end
		if 4*len(bb.b) >= whole {
			size = whole // a quarter has arrived: the rest in one step, not two or three
		}
		size = max(len(bb.b)+1, min(size, whole))
	}
	if bb.budget != nil {
		if delta := int64(size) - bb.reserved; delta > 0 {
			if err := bb.budget.reserve(bb.caller, delta); err != nil {
				return err
			}
			bb.reserved += delta
		}
	}
	if size > cap(bb.b) { // after reserving: a refused body costs nothing
		b := make([]byte, len(bb.b), size)
		copy(b, bb.b)
		bb.b = b
	}
	return nil
}

// errTooLarge is returned past the body limit.
var errTooLarge = errors.New("body too large")

// bodyReader reads a request body into a bodyBuf as it arrives, within the body limit.
type bodyReader struct {
	bb    *bodyBuf
	src   io.Reader
	limit int64
	hint  int64 // the announced Content-Length; -1 when unknown
	eof   bool
}

// newBodyReader starts reading r's body into a buffer held in bgt for caller. A body
// announced larger than limit is refused before anything is read.
func newBodyReader(r *http.Request, limit int64, bgt *budget, caller string) (*bodyReader, error) {
	if r.ContentLength > limit {
		return nil, errTooLarge
	}
	br := &bodyReader{bb: newBodyBuf(bgt, caller), src: r.Body, limit: limit, hint: r.ContentLength}
	br.eof = r.Body == nil || r.Body == http.NoBody
	return br, nil
}

// read reads the body to its end; or, when until is set, until until reports true for the
// bytes read so far. until is asked after reads that at least doubled what it saw last, so
// that a body is looked at a few times, not at every read.
func (br *bodyReader) read(until func([]byte) bool) error {
	bb, asked := br.bb, 0
	for !br.eof {
		if err := bb.room(br.hint); err != nil {
			return err
		}
		n, err := br.src.Read(bb.free())
		bb.b = bb.b[:len(bb.b)+n]
		if int64(len(bb.b)) > br.limit {
			return errTooLarge
		}
		switch {
		case err == io.EOF:
			br.eof = true
		case err != nil:
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return errTooLarge
			}
			return err
		}
		if until != nil && !br.eof && len(bb.b) >= 2*asked {
			asked = len(bb.b)
			if until(bb.b) {
				return nil
			}
		}
	}
	return nil
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
