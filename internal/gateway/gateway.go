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

// Package gateway is the HTTP data plane: the NeMo-compatible OpenAI routes, served by
// net/http/httputil.ReverseProxy with a transport that picks a provider, retries on another
// one (or, for a virtual model, falls back to another target) before the first byte reaches
// the client, and ejects providers that keep failing.
//
// It reads the routing table from a routing.Store on every request and never calls the
// Kubernetes API.
//
// A proxied request's way through, a file per step:
//
//   - handler.go routes it (ServeHTTP, route, serveProxy); authn.go and authz.go authenticate
//     and authorize the caller;
//   - resolve.go finds the entity the client named and reads the body; target.go resolves the
//     entity's targets to the providers that may serve it;
//   - limits.go admits it to its budgets; queue.go holds it while every provider is saturated;
//   - outbound.go shapes the upstream request; attempt.go is the attempt loop (pick a
//     provider, send, classify the failure in classify.go, retry or fall back, with
//     stall.go's bound on a stream's first bytes from a virtual model's target);
//   - response.go and stream.go rewrite the response; finish.go records the outcome.
package gateway

import (
	"errors"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/routing"
)

// Defaults of Options.
const (
	DefaultMaxBodyBytes    = 32 << 20
	DefaultMaxAttempts     = 3
	DefaultBufferBytes     = 128 << 20
	DefaultBodyReadTimeout = time.Minute
)

// DefaultTimeouts apply to providers that set none.
var DefaultTimeouts = routing.Timeouts{
	Connect:        5 * time.Second,
	ResponseHeader: 5 * time.Minute,
	StreamIdle:     2 * time.Minute,
}

// Options configure a Gateway.
type Options struct {
	// Store holds the routing table. Required.
	Store *routing.Store
	// MaxBodyBytes limits request bodies; larger ones get 413. Default 32 MiB.
	MaxBodyBytes int64
	// MaxAttempts bounds the providers tried for one request. Default 3.
	MaxAttempts int
	// BufferBytes bounds the bytes that all requests in flight hold in memory together
	// (bodies read whole, JSON responses rewritten): a request whose body does not fit gets
	// 503 with Retry-After. Default 128 MiB.
	BufferBytes int64
	// CallerBufferBytes bounds the share of BufferBytes that the request bodies of one caller
	// hold (the ServiceAccounts of a namespace count as one caller): past it, the caller's
	// requests get 429 with Retry-After, and others keep theirs. It applies when Access is
	// set. Default a quarter of BufferBytes; negative turns it off.
	CallerBufferBytes int64
	// BodyReadTimeout bounds the time to receive a request body. Default 1m.
	BodyReadTimeout time.Duration
	// Timeouts are the defaults for providers that set none.
	Timeouts routing.Timeouts
	// Policy decides ejections.
	Policy routing.Policy
	// Registerer receives the metrics. Default: a new registry (the manager passes
	// controller-runtime's, so that its /metrics serves them).
	Registerer prometheus.Registerer
	// Gatherer serves /metrics on the gateway port; nil disables that route.
	Gatherer prometheus.Gatherer
	// ID names this gateway installation in egress.HopHeader; every replica of one installation
	// has the same. A request that comes back with it is a loop, answered 508. Default: an id
	// of its own.
	ID string
	// AllowLocalUpstreams lets upstreams be loopback, link-local or unspecified addresses
	// (--allow-local-upstreams); by default such dials are refused.
	AllowLocalUpstreams bool
	// Egress decides where upstream connections may go and whether they use the environment's
	// proxy (see package egress). Default: egress.Default(AllowLocalUpstreams).
	Egress *egress.Policy
	// Access authenticates callers and authorizes every request (--gateway-auth=kubernetes);
	// nil serves every caller (--gateway-auth=none). /metrics then needs `get` on its path.
	Access Access
	// Log receives upstream errors at V(1). Keys, tokens and bodies are never logged.
	Log logr.Logger
	// AccessLog writes a line per request to Log, named "access", at info level: request ID,
	// workspace, entity, provider, attempts, status, duration, time to the first event of a
	// stream, tokens in and out, and the caller's user name when Access is set.
	AccessLog bool
	// TracerProvider, when set, traces proxied requests and their upstream attempts (see
	// trace.go); nil costs nothing.
	TracerProvider trace.TracerProvider
	// Limiter enforces the InferenceBudgets of the routing table; nil enforces none.
	Limiter *quota.Limiter
	// Pools hold requests while every provider of their model is saturated (queue.go), and
	// share the fair-share counters with the other replicas. Default: pools of this replica
	// alone.
	Pools *flow.Pools
	// Now is the clock of ejections, cool-downs and durations. Default time.Now; tests move it.
	Now func() time.Time
}

// Gateway is the gateway's http.Handler.
type Gateway struct {
	opts       Options
	store      *routing.Store
	proxy      *httputil.ReverseProxy
	metrics    *metrics
	metricsH   http.Handler
	handler    http.Handler   // the routes, behind authentication when Access is set
	buffers    budget         // bytes held by bodies read whole and responses rewritten
	limiter    *quota.Limiter // InferenceBudgets; nil enforces none
	pools      *flow.Pools    // the queues of saturated pools
	hop        []string       // the egress.HopHeader value of a request that arrived without one
	transports sync.Map       // transportKey → *http.Transport
	log        logr.Logger
	access     logr.Logger  // the access log; set only with Options.AccessLog
	tracer     trace.Tracer // nil unless Options.TracerProvider is set
}

// New returns a gateway.
func New(opts Options) (*Gateway, error) {
	if opts.Store == nil {
		return nil, errors.New("gateway: Options.Store is required")
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = DefaultBufferBytes
	}
	if opts.CallerBufferBytes == 0 {
		opts.CallerBufferBytes = opts.BufferBytes / 4
	}
	if opts.BodyReadTimeout <= 0 {
		opts.BodyReadTimeout = DefaultBodyReadTimeout
	}
	opts.Timeouts = opts.Timeouts.WithDefaults(DefaultTimeouts)
	opts.Policy = opts.Policy.WithDefaults()
	if opts.Registerer == nil {
		opts.Registerer = prometheus.NewRegistry()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m, err := newMetrics(opts.Registerer, opts.Store, opts.Now)
	if err != nil {
		return nil, err
	}
	if opts.ID == "" {
		opts.ID = egress.GatewayID(newRequestID())
	}
	if opts.Pools == nil {
		if opts.Pools, err = flow.NewPools(flow.PoolsOptions{}); err != nil {
			return nil, err
		}
	}
	g := &Gateway{opts: opts, store: opts.Store, metrics: m, log: opts.Log, hop: []string{opts.ID}, limiter: opts.Limiter, pools: opts.Pools,
		buffers: budget{limit: opts.BufferBytes, share: max(opts.CallerBufferBytes, 0)}}
	if err := registerBudget(opts.Registerer, &g.buffers); err != nil {
		return nil, err
	}
	if opts.AccessLog {
		g.access = opts.Log.WithName("access")
	}
	if opts.TracerProvider != nil {
		g.tracer = opts.TracerProvider.Tracer("github.com/infergate/infergate/internal/gateway")
	}
	if opts.Gatherer != nil {
		g.metricsH = promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{})
	}
	g.handler = http.HandlerFunc(g.route)
	if opts.Access != nil {
		g.handler = g.withAuthentication(g.handler)
	}
	g.proxy = &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      g,
		ModifyResponse: g.modifyResponse,
		ErrorHandler:   g.proxyError,
		BufferPool:     copyBuffers{},
		ErrorLog:       nil,
	}
	return g, nil
}

type copyBuffers struct{}

var copyBufferPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

func (copyBuffers) Get() []byte { return *copyBufferPool.Get().(*[]byte) }

func (copyBuffers) Put(b []byte) { copyBufferPool.Put(&b) }

// ServeHTTP refuses loops, answers the probes, gives the request its id, then serves it
// through the handler chain: authentication (when Access is set), then the routes.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Before every route, the probes included: a Provider whose URL or health path leads back
	// to the gateway must not find it healthy.
	if looped(r, g.opts.ID) {
		g.failUnrouted(w, r, errLoopDetected())
		return
	}
	switch r.URL.Path {
	case "/healthz":
		w.WriteHeader(http.StatusOK)
		return
	case "/readyz":
		if !g.store.Loaded() {
			http.Error(w, "no routing table yet", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	requestID := r.Header.Get("X-Request-Id")
	if !validRequestID(requestID) {
		requestID = newRequestID()
	}
	w.Header()["X-Request-Id"] = []string{requestID}
	if g.opts.AccessLog {
		r = withStart(r, g.opts.Now())
	}
	g.handler.ServeHTTP(w, r)
}

// looped reports whether r has already passed through gateway id, or through as many gateways
// as egress.MaxHops allows; a path that nests more gateway routes than are left to it counts
// too, so that a request line naming the gateway's routes over and over cannot fan out into
// as many nested requests before the hop limit is reached.
func looped(r *http.Request, id string) bool {
	hops := r.Header[egress.HopHeader]
	if len(hops) > 0 && egress.Looped(hops, id) {
		return true
	}
	if nested := strings.Count(r.URL.Path, Prefix) - 1; nested > 0 {
		// Each gateway route nested in the path is one more gateway on the way.
		return egress.Looped(append(slices.Clip(hops), strings.Repeat(",nested", nested)), id)
	}
	return false
}
