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
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/infergate/infergate/internal/jsonfield"
)

// errStreamIdle is the cancellation cause when an upstream stays silent past its idle timeout.
var errStreamIdle = errors.New("stream idle timeout")

// idleTimer cancels the upstream request when a read from its body waits longer than d.
// Only time spent waiting for the upstream counts: the timer runs during reads only.
// Timers are pooled; one that ever fired is not reused, so a late callback can never cancel
// another request.
type idleTimer struct {
	t       *time.Timer
	d       time.Duration
	cancel  atomic.Value // context.CancelCauseFunc
	expired bool
}

var idleTimers = sync.Pool{New: func() any {
	it := &idleTimer{}
	it.t = time.AfterFunc(time.Hour, func() { it.cancel.Load().(context.CancelCauseFunc)(errStreamIdle) })
	it.t.Stop()
	return it
}}

func newIdleTimer(d time.Duration, cancel context.CancelCauseFunc) *idleTimer {
	it := idleTimers.Get().(*idleTimer)
	it.d, it.expired = d, false
	it.cancel.Store(cancel)
	return it
}

func (it *idleTimer) read(src io.Reader, p []byte) (int, error) {
	it.t.Reset(it.d)
	n, err := src.Read(p)
	if !it.t.Stop() {
		it.expired = true
	}
	return n, err
}

// release returns the timer to the pool; the caller must not use it afterwards.
func (it *idleTimer) release() {
	if it.t.Stop() || !it.expired {
		it.expired = false
		idleTimers.Put(it)
	}
}

// rawBody passes an upstream body through unchanged, under the idle timeout.
type rawBody struct {
	src  io.ReadCloser
	idle *idleTimer
}

func (b *rawBody) Read(p []byte) (int, error) { return b.idle.read(b.src, p) }

func (b *rawBody) Close() error {
	if b.idle != nil {
		b.idle.release()
		b.idle = nil
	}
	return b.src.Close()
}

// maxSSELine bounds how much of one SSE line is held to rewrite it; a longer line is passed
// through unchanged as it arrives, so nothing buffers without bound.
const maxSSELine = 1 << 20

var ssePool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// sseBody rewrites the model in every `data:` event of a text/event-stream and reads usage,
// keeping every other line (event:, id:, retry:, comments, blank lines) byte for byte. It
// hands on each complete line as soon as it has it, so events reach the client as the
// upstream sends them.
type sseBody struct {
	src     io.ReadCloser
	idle    *idleTimer
	pr      *proxyRequest
	in, out *[]byte
	outPos  int
	err     error
	midLine bool // passing an over-long line through
	segs    [][]byte
}

func newSSEBody(src io.ReadCloser, idle *idleTimer, pr *proxyRequest) *sseBody {
	return &sseBody{src: src, idle: idle, pr: pr, in: ssePool.Get().(*[]byte), out: ssePool.Get().(*[]byte)}
}

func (b *sseBody) Read(p []byte) (int, error) {
	for {
		out := *b.out
		if b.outPos < len(out) {
			n := copy(p, out[b.outPos:])
			b.outPos += n
			return n, nil
		}
		*b.out, b.outPos = out[:0], 0
		if b.err != nil {
			if len(*b.in) > 0 {
				// A last line without a newline.
				b.line(*b.in, nil)
				*b.in = (*b.in)[:0]
				continue
			}
			return 0, b.err
		}
		in := *b.in
		if cap(in)-len(in) < 4<<10 {
			grown := make([]byte, len(in), 2*cap(in)+4<<10)
			copy(grown, in)
			in = grown
		}
		n, err := b.idle.read(b.src, in[len(in):cap(in)])
		in = in[:len(in)+n]
		if err != nil {
			b.err = err
			if errors.Is(context.Cause(b.pr.ctx), errStreamIdle) {
				// End the stream with an error event the client can read, not a cut.
				*b.out = append(*b.out, b.pr.g.idleEvent(b.pr)...)
				b.err = io.EOF
			}
		}
		*b.in = b.lines(in)
	}
}

// lines moves every complete line of in to the output and returns the rest, moved to the front.
func (b *sseBody) lines(in []byte) []byte {
	start := 0
	for {
		i := bytes.IndexByte(in[start:], '\n')
		if i < 0 {
			break
		}
		end := start + i + 1
		if b.midLine {
			*b.out = append(*b.out, in[start:end]...)
			b.midLine = false
		} else {
			b.line(in[start:end-1], in[end-1:end])
		}
		start = end
	}
	rest := in[start:]
	if len(rest) >= maxSSELine || (b.midLine && len(rest) > 0) {
		*b.out = append(*b.out, rest...)
		b.midLine = true
		rest = rest[:0]
	}
	return in[:copy(in, rest)]
}

// line handles one line without its "\n" (nl is that newline, or nil at the very end).
func (b *sseBody) line(line, nl []byte) {
	body := line
	cr := len(body) > 0 && body[len(body)-1] == '\r'
	if cr {
		body = body[:len(body)-1]
	}
	payload, ok := bytes.CutPrefix(body, []byte("data:"))
	if ok {
		payload = bytes.TrimPrefix(payload, []byte(" "))
	}
	if !ok || len(payload) == 0 || payload[0] != '{' {
		*b.out = append(append(*b.out, line...), nl...)
		return
	}
	if b.pr.events++; b.pr.events == 1 {
		b.pr.firstEvent = b.pr.g.opts.Now()
	}
	var u usage
	b.segs, u = b.pr.rw.rewrite(b.segs[:0], payload)
	if u.seen {
		b.pr.usage = u
		if b.pr.stripUsage && usageOnly(payload, b.pr.rw.members) {
			// The gateway asked for this event to settle the request's budget; the client
			// did not. The blank line after it ends an empty event, which clients skip.
			return
		}
	}
	out := append(*b.out, body[:len(body)-len(payload)]...)
	for _, s := range b.segs {
		out = append(out, s...)
	}
	if cr {
		out = append(out, '\r')
	}
	*b.out = append(out, nl...)
}

// usageOnly tells whether a chat or completion chunk is the usage event that
// stream_options.include_usage adds: its choices are empty.
func usageOnly(payload []byte, members []jsonfield.Member) bool {
	m, ok := jsonfield.Find(payload, members, "choices")
	return ok && string(bytes.Join(bytes.Fields(m.Value(payload)), nil)) == "[]"
}

func (b *sseBody) Close() error {
	if b.idle != nil {
		b.idle.release()
		b.idle = nil
	}
	err := b.src.Close()
	if b.in != nil {
		*b.in, *b.out = (*b.in)[:0], (*b.out)[:0]
		if cap(*b.in) <= 64<<10 {
			ssePool.Put(b.in)
		}
		if cap(*b.out) <= 64<<10 {
			ssePool.Put(b.out)
		}
		b.in, b.out = nil, nil
	}
	return err
}

// idleEvent is the SSE error event that ends a stream whose upstream went silent.
func (g *Gateway) idleEvent(pr *proxyRequest) []byte {
	msg := "stream idle timeout: provider " + pr.currentID() + " sent nothing for " + pr.timeouts.StreamIdle.String()
	event := append([]byte(`data: {"error":{"message":`), jsonfield.AppendString(nil, msg)...)
	return append(event, `,"type":"server_error","code":"stream_idle_timeout"}}`+"\n\n"...)
}
