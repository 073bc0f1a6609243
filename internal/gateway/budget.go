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
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apiserver/pkg/authentication/user"
)

// budget bounds the bytes that requests in flight hold in memory at once, all together:
// request bodies read whole (to find and rewrite `model`, add body fields, or retry on another
// provider) and JSON responses read whole to rewrite `model` back. A request whose body does not
// fit is answered 503 with Retry-After; a response that does not fit is passed through as it
// comes. Per-request limits alone let a few clients exhaust the pod's memory.
//
// Each caller may hold a share of it at most, so that one identity cannot take it all from
// the others: past its share, its own requests are answered 429. Bytes are reserved as they
// arrive, never for what a client announces.
type budget struct {
	limit int64
	used  atomic.Int64
	// share is what one caller may hold (callerOf); 0 bounds callers by limit alone.
	share   int64
	mu      sync.Mutex
	callers map[string]int64 // bytes held per caller, while any
}

// reserve takes n bytes of the budget for caller ("" for none), or returns errOverShare or
// errOverBudget when they do not fit.
func (b *budget) reserve(caller string, n int64) error {
	shared := caller != "" && b.share > 0
	if shared {
		b.mu.Lock()
		held := b.callers[caller]
		if held+n > b.share {
			b.mu.Unlock()
			return errOverShare
		}
		if b.callers == nil {
			b.callers = map[string]int64{}
		}
		b.callers[caller] = held + n
		b.mu.Unlock()
	}
	for {
		used := b.used.Load()
		if used+n > b.limit {
			if shared {
				b.releaseShare(caller, n)
			}
			return errOverBudget
		}
		if b.used.CompareAndSwap(used, used+n) {
			return nil
		}
	}
}

func (b *budget) release(caller string, n int64) {
	if n == 0 {
		return
	}
	b.used.Add(-n)
	if caller != "" && b.share > 0 {
		b.releaseShare(caller, n)
	}
}

func (b *budget) releaseShare(caller string, n int64) {
	b.mu.Lock()
	if held := b.callers[caller] - n; held > 0 {
		b.callers[caller] = held
	} else {
		delete(b.callers, caller)
	}
	b.mu.Unlock()
}

// errOverBudget is returned when a body does not fit in the budget.
var errOverBudget = errors.New("the gateway's memory budget for request bodies is used up")

// errOverShare is returned when a body does not fit in its caller's share of the budget.
var errOverShare = errors.New("the caller's share of the gateway's memory budget for request bodies is used up")

// serviceAccountPrefix starts the user names of ServiceAccounts.
const serviceAccountPrefix = "system:serviceaccount:"

// callerOf names whose share of the budget a request's bytes are held in: the authenticated
// user; for a ServiceAccount, its namespace, so that a tenant who may create ServiceAccounts
// cannot multiply its share by creating more. "" when the gateway does not authenticate.
func callerOf(u user.Info) string {
	if u == nil {
		return ""
	}
	name := u.GetName()
	if ns, ok := strings.CutPrefix(name, serviceAccountPrefix); ok {
		if i := strings.IndexByte(ns, ':'); i >= 0 {
			return name[:len(serviceAccountPrefix)+i]
		}
	}
	return name
}

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
	done  bool          // read to its end
	bad   bool          // failed: too large, too slow, or cut
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
		b.bad = true
		return n - int(b.n-b.limit), &http.MaxBytesError{Limit: b.limit}
	}
	if err != nil && err != io.EOF {
		b.bad = true
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

// refuse answers e to a request that the gateway refuses before it went upstream. When the
// client may still be sending its body (refused once its model arrived, past the memory budget
// or the body limit part way through), the answer goes out at once, so that the client reads
// it rather than a connection reset while it writes, and the connection closes after it; what
// remains of a body within its limit and deadline is read to nothing first, so that the client
// can finish writing, and the gateway holds none of those bytes.
func refuse(w http.ResponseWriter, r *http.Request, e *apiError) {
	b, ok := r.Body.(*clientBody)
	if !ok || b.done {
		writeError(w, e)
		return
	}
	w.Header().Set("Connection", "close")
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex() // HTTP/1.1 lets the answer go before the body's end when asked
	writeError(w, e)
	_ = rc.Flush()
	if !b.bad && r.ContentLength <= b.limit {
		_, _ = io.Copy(io.Discard, b)
	}
}
