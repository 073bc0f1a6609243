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

// The state of a request on a proxied route, and request ids.

package gateway

import (
	"context"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/routing"
)

// proxyRequest is the state of one request on a proxied route. It travels with the request's
// context from the handler through the ReverseProxy to the transport and back.
type proxyRequest struct {
	g      *Gateway
	cancel context.CancelCauseFunc
	ctx    context.Context // the cancellable context of the upstream request

	rt        route
	in        *http.Request // as the server gave it
	out       *http.Request // in with the upstream request's context and the body's limits
	requestID string
	// requestIDs and hops are the X-Request-Id and egress.HopHeader values sent upstream.
	requestIDs, hops []string
	start            time.Time

	entity   *routing.Entity   // entity routes: the entity the client named
	provider *routing.Provider // provider route
	label    string            // the workspace as metrics name it

	// The entity whose providers the attempts go to: entity itself, or for a virtual model
	// the target of the plan at step (target.go).
	serving *routing.Entity
	target  *routing.Target
	plan    []uint8
	step    int

	body       *bodyBuf // nil when the body is streamed through
	object     bool     // the body is a JSON object, whose members are in members
	members    []jsonfield.Member
	model      int  // index of the `model` member, or -1
	setModel   bool // write the served name into `model`
	replayable bool // the body can be sent again on another attempt

	tried     uint64
	backend   *routing.Backend
	current   *routing.Provider
	timeouts  routing.Timeouts
	began     bool       // current.Health.Begin without End
	streaming bool       // current.Health.StreamBegin without StreamEnd
	blocks    []uint64   // chained hashes of the prompt's blocks, for CacheAware
	head      firstBytes // the first bytes of a stream, read ahead (see firstbytes.go)
	attempts  int        // upstream attempts made
	// retryAfter is the shortest Retry-After of a failed attempt; stall is the timer of the
	// current attempt's time to first token (stall.go).
	retryAfter time.Duration
	stall      *time.Timer

	span, attemptSpan trace.Span // the request's and the current attempt's, when tracing

	status int
	ttfb   time.Duration
	// sent is when the current attempt was sent; firstEvent when its first SSE data event came
	// (zero before); events counts those events. They give the provider's latency signals.
	sent       time.Time
	firstEvent time.Time
	events     int64
	usage      usage
	rw         responseRewriter
	segs       [][]byte

	// The request's budgets (limits.go): its counters and their decision; budgeted once tokens
	// are reserved, until settled. overrides replace body members upstream (its output cap,
	// stream_options); stripUsage keeps the usage event the gateway asked for from the client.
	quota      quota.Request
	decision   quota.Decision
	budgeted   bool
	stripUsage bool
	notRun     bool // the last attempt failed before the request could run upstream
	overrides  []routing.BodyField

	// The request's place in the queue of its pool (queue.go), while it holds a slot there.
	ticket flow.Ticket
	queue  *flow.Queue
}

type proxyRequestKey struct{}

var proxyRequests = sync.Pool{New: func() any { return &proxyRequest{} }}

func fromContext(ctx context.Context) *proxyRequest {
	pr, _ := ctx.Value(proxyRequestKey{}).(*proxyRequest)
	return pr
}

func (pr *proxyRequest) currentID() string {
	if pr.target != nil {
		// The caller may call the virtual model, not necessarily its targets: their providers
		// go unnamed.
		return "of " + pr.entity.ID
	}
	if pr.current != nil {
		return pr.current.ID
	}
	if pr.serving != nil {
		return "of " + pr.serving.ID
	}
	return ""
}

// validRequestID accepts client request ids of up to 128 visible ASCII characters.
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

const hexDigits = "0123456789abcdef"

// newRequestID returns 32 random hex digits.
func newRequestID() string {
	var b [32]byte
	hi, lo := rand.Uint64(), rand.Uint64()
	for i := 0; i < 16; i++ {
		b[i] = hexDigits[(hi>>(60-4*i))&0xf]
		b[16+i] = hexDigits[(lo>>(60-4*i))&0xf]
	}
	return string(b[:])
}
