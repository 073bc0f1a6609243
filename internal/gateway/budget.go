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
	"sync/atomic"
	"time"
)

// budget bounds the bytes that requests in flight hold in memory at once, all together:
// request bodies read whole (to find and rewrite `model`, add body fields, or retry on another
// provider) and JSON responses read whole to rewrite `model` back. A request whose body does not
// fit is answered 503 with Retry-After; a response that does not fit is passed through as it
// comes. Per-request limits alone let a few clients exhaust the pod's memory.
type budget struct {
	limit int64
	used  atomic.Int64
}

// reserve takes n bytes of the budget, or reports false when they do not fit.
func (b *budget) reserve(n int64) bool {
	for {
		used := b.used.Load()
		if used+n > b.limit {
			return false
		}
		if b.used.CompareAndSwap(used, used+n) {
			return true
		}
	}
}

func (b *budget) release(n int64) { b.used.Add(-n) }

// errOverBudget is returned when a body does not fit in the budget.
var errOverBudget = errors.New("the gateway's memory budget for request bodies is used up")

// clientBody is a client's request body with the gateway's limits: at most limit bytes, past
// which the connection is closed after the answer (what remains of the body is not read), and
// a read deadline for the whole body, lifted once the body is read to its end so that it
// cannot cut a long response short. A body that fails keeps the deadline: what remains of it
// is not waited for, and the server closes the connection after the answer.
type clientBody struct {
	io.ReadCloser
	w     http.ResponseWriter
	n     int64
	limit int64
	rd    readDeadliner // set when a read deadline is
	done  bool
}

// readDeadliner is what the server's response writer offers to bound reads of the body.
type readDeadliner interface{ SetReadDeadline(time.Time) error }

// limitBody puts the gateway's limits on r's body.
func (g *Gateway) limitBody(w http.ResponseWriter, r *http.Request) {
	b := &clientBody{ReadCloser: r.Body, w: w, limit: g.opts.MaxBodyBytes}
	if rd, ok := w.(readDeadliner); ok && g.opts.BodyReadTimeout > 0 {
		_ = rd.SetReadDeadline(time.Now().Add(g.opts.BodyReadTimeout))
		b.rd = rd
	}
	r.Body = b
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.n > b.limit {
		return 0, &http.MaxBytesError{Limit: b.limit}
	}
	if rest := b.limit - b.n + 1; int64(len(p)) > rest {
		p = p[:rest] // one byte more than allowed tells a body that is too large
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if b.n > b.limit {
		b.w.Header().Set("Connection", "close")
		return n - int(b.n-b.limit), &http.MaxBytesError{Limit: b.limit}
	}
	if err == io.EOF && !b.done {
		// The server's reads that watch for a client going away must not time out while
		// the response streams.
		b.done = true
		if b.rd != nil {
			_ = b.rd.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}
