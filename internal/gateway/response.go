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

// The response: the served model rewritten back, usage read, errors answered.

package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/infergate/infergate/internal/egress"
)

// maxRewriteBytes bounds a JSON response held in memory to rewrite its model; a larger one is
// passed through unchanged, its model the served name.
const maxRewriteBytes = 16 << 20

// modifyResponse prepares the response body: the served model name is rewritten back to the
// entity id in JSON and in every SSE event, and reads are bounded by the idle timeout.
func (g *Gateway) modifyResponse(resp *http.Response) error {
	pr := fromContext(resp.Request.Context())
	pr.ttfb = g.opts.Now().Sub(pr.start)
	pr.status = resp.StatusCode
	delete(resp.Header, "X-Request-Id")
	if pr.budgeted {
		// The client's limits are its budgets' (set by admit), not those of the provider's key.
		for name := range resp.Header {
			if strings.HasPrefix(name, "X-Ratelimit-") {
				delete(resp.Header, name)
			}
		}
	}
	idle := newIdleTimer(pr.timeouts.StreamIdle, pr.cancel)
	if isSSE(resp.Header.Get("Content-Type")) {
		pr.current.Health.StreamBegin() // finish ends it
		pr.streaming = true
	}

	if pr.entity == nil {
		// The provider route passes the response through; for a budget, its usage is read.
		switch ct := resp.Header.Get("Content-Type"); {
		case !pr.budgeted:
		case isSSE(ct):
			resp.Body = newSSEBody(resp.Body, idle, pr)
			return nil
		case isJSON(ct) && resp.Header.Get("Content-Encoding") == "":
			return g.rewriteJSON(resp, pr, idle)
		}
		resp.Body = &rawBody{src: resp.Body, idle: idle}
		return nil
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		// The upstream refused our key: that is the gateway's problem, not the client's.
		idle.release()
		resp.Body.Close()
		return errUpstreamAuth(pr.currentID(), resp.StatusCode)
	}
	pr.rw.served = []byte(pr.backend.ServedModel)
	pr.rw.any = pr.target != nil
	pr.rw.id = pr.entity.IDJSON
	ct := resp.Header.Get("Content-Type")
	switch {
	case isSSE(ct):
		resp.Body = newSSEBody(resp.Body, idle, pr)
	case isJSON(ct) && resp.Header.Get("Content-Encoding") == "":
		return g.rewriteJSON(resp, pr, idle)
	default:
		resp.Body = &rawBody{src: resp.Body, idle: idle}
	}
	return nil
}

// rewriteJSON reads a JSON response whole (it is one document, not a stream), rewrites its
// model and reads its usage.
func (g *Gateway) rewriteJSON(resp *http.Response, pr *proxyRequest, idle *idleTimer) error {
	bb := newBodyBuf(&g.buffers, "")
	src := resp.Body
	for {
		if bb.room(resp.ContentLength) != nil {
			// No room in the budget: send what was read, then the rest as it comes.
			resp.Body = passThrough(bb, src, idle)
			return nil
		}
		n, err := idle.read(src, bb.free())
		bb.b = bb.b[:len(bb.b)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			idle.release()
			bb.release()
			src.Close()
			return err
		}
		if len(bb.b) > maxRewriteBytes {
			// Too large to hold: send what was read, then the rest as it comes.
			resp.Body = passThrough(bb, src, idle)
			return nil
		}
	}
	idle.release()
	src.Close()
	var u usage
	pr.segs, u = pr.rw.rewrite(pr.segs[:0], bb.b)
	if u.seen {
		pr.usage = u
	}
	body := newSegments(pr.segs, bb)
	bb.release()
	n := segmentsLen(pr.segs)
	resp.Body = body
	resp.ContentLength = n
	resp.Header["Content-Length"] = []string{strconv.FormatInt(n, 10)}
	return nil
}

// passThrough is a response body of what bb holds, then the rest of src as it comes; it takes
// over bb.
func passThrough(bb *bodyBuf, src io.ReadCloser, idle *idleTimer) io.ReadCloser {
	body := &rawBody{src: struct {
		io.Reader
		io.Closer
	}{io.MultiReader(newSegments([][]byte{bb.b}, bb), src), src}, idle: idle}
	bb.release()
	return body
}

// proxyError answers a request whose upstream could not be used.
func (g *Gateway) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	pr := fromContext(r.Context())
	var e *apiError
	switch {
	case errors.As(err, &e):
	case errors.Is(err, errTooLarge), errors.As(err, new(*http.MaxBytesError)):
		e = errBodyTooLarge(g.opts.MaxBodyBytes)
	case errors.Is(err, os.ErrDeadlineExceeded) && pr.in.Context().Err() == nil:
		e = errBodyTimeout(g.opts.BodyReadTimeout)
	case r.Context().Err() != nil && !errors.Is(context.Cause(pr.ctx), errStreamIdle) && pr.in.Context().Err() != nil:
		pr.status = 499 // the client went away; nobody to answer
		return
	case errors.Is(context.Cause(pr.ctx), errStreamIdle), isTimeout(err):
		e = errUpstreamTimeout(pr.currentID())
	case egress.IsNotAllowed(err):
		e = errUpstreamNotAllowed(pr.currentID(), err)
	default:
		e = errUpstreamUnreachable(pr.currentID())
	}
	g.log.V(1).Info("upstream error", "provider", pr.currentID(), "error", err.Error(), "requestID", pr.requestID)
	pr.status = e.status
	writeError(w, e)
}
