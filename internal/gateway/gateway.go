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
// one before the first byte reaches the client, and ejects providers that keep failing.
//
// It reads the routing table from a routing.Store on every request and never calls the
// Kubernetes API.
package gateway

import (
	"context"
	"errors"
	"io"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/naming"
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

// maxRewriteBytes bounds a JSON response held in memory to rewrite its model; a larger one is
// passed through unchanged, its model the served name.
const maxRewriteBytes = 16 << 20

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

func (copyBuffers) Get() []byte  { return *copyBufferPool.Get().(*[]byte) }
func (copyBuffers) Put(b []byte) { copyBufferPool.Put(&b) }

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

	entity   *routing.Entity   // entity routes
	provider *routing.Provider // provider route

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

// route serves /metrics and the gateway routes.
func (g *Gateway) route(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/metrics" && g.metricsH != nil {
		if e := g.authorizePath(r); e != nil {
			writeError(w, e)
			return
		}
		g.metricsH.ServeHTTP(w, r)
		return
	}
	rt := parsePath(r.Method, r.URL.EscapedPath())
	if rt.kind == routeUnknown {
		g.fail(w, r, rt, "", errUnknownRoute())
		return
	}
	if !validWorkspace(rt.workspace) {
		g.fail(w, r, rt, "", errInvalidWorkspace())
		return
	}
	if escapesBase(rt.trailing) {
		g.fail(w, r, rt, "", errInvalidPath())
		return
	}
	table := g.store.Load()
	ws := rt.workspace
	if !table.HasWorkspace(ws) {
		ws = "" // no label value for workspaces that hold nothing
	}
	switch rt.kind {
	case routeModelsList:
		g.listModels(w, r, rt, ws, table)
	case routeModelsGet:
		name := rt.name
		if strings.IndexByte(name, '%') >= 0 {
			// SDKs escape the slash of "workspace/name".
			if unescaped, err := url.PathUnescape(name); err == nil {
				name = unescaped
			}
		}
		name = strings.TrimPrefix(name, rt.workspace+"/")
		if !naming.Valid(name) {
			g.fail(w, r, rt, ws, errModelNotFound(rt.workspace+"/"+name))
			return
		}
		if e := g.authorize(r, rt.workspace, "get", resourceModelEntities, subresourceProxy, name); e != nil {
			g.fail(w, r, rt, ws, e)
			return
		}
		e, ok := table.Entity(rt.workspace, name)
		if !ok || len(e.Backends) == 0 {
			g.fail(w, r, rt, ws, errModelNotFound(rt.workspace+"/"+name))
			return
		}
		g.writeJSON(w, r, rt, ws, e.ModelJSON)
	case routeProviderReady:
		if !naming.Valid(rt.name) {
			g.fail(w, r, rt, ws, errInvalidName("name"))
			return
		}
		if e := g.authorize(r, rt.workspace, "get", resourceProviders, "", rt.name); e != nil {
			g.fail(w, r, rt, ws, e)
			return
		}
		p, ok := table.Provider(rt.workspace, rt.name)
		if !ok || !p.Ready {
			g.fail(w, r, rt, ws, errProviderNotReady(rt.workspace+"/"+rt.name))
			return
		}
		g.writeJSON(w, r, rt, ws, p.ReadyJSON)
	default:
		g.serveProxy(w, r, rt, table, w.Header()["X-Request-Id"]) // set by ServeHTTP
	}
}

func (g *Gateway) writeJSON(w http.ResponseWriter, r *http.Request, rt route, ws string, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	g.answered(w, r, rt, ws, "", http.StatusOK, time.Time{})
}

// fail answers an error the gateway decided itself and counts it.
func (g *Gateway) fail(w http.ResponseWriter, r *http.Request, rt route, ws string, e *apiError) {
	writeError(w, e)
	g.answered(w, r, rt, ws, "", e.status, time.Time{})
}

// answered counts a request the gateway answered itself, without an upstream, and writes its
// access line; start is when it arrived, zero for the time ServeHTTP recorded.
func (g *Gateway) answered(w http.ResponseWriter, r *http.Request, rt route, ws, entity string, status int, start time.Time) {
	g.metrics.requests.WithLabelValues(ws, entity, "", rt.kind.String(), codeLabel(status)).Inc()
	if g.opts.AccessLog {
		g.logAccess(r, start, accessEntry{requestID: w.Header().Get("X-Request-Id"), workspace: rt.workspace, entity: entity, status: status})
	}
}

// failUnrouted answers an error decided before routing, such as 401, and counts it by the
// route the path names, without a workspace: nothing the caller sent is trusted as a label.
func (g *Gateway) failUnrouted(w http.ResponseWriter, r *http.Request, e *apiError) {
	g.fail(w, r, parsePath(r.Method, r.URL.EscapedPath()), "", e)
}

func (g *Gateway) serveProxy(w http.ResponseWriter, r *http.Request, rt route, table *routing.Table, requestID []string) {
	pr := proxyRequests.Get().(*proxyRequest)
	*pr = proxyRequest{members: pr.members[:0], segs: pr.segs[:0], blocks: pr.blocks[:0], rw: responseRewriter{members: pr.rw.members[:0], nested: pr.rw.nested[:0]},
		quota: quota.Request{Counters: pr.quota.Counters[:0]}, decision: pr.decision.Reuse(), overrides: pr.overrides[:0]}
	pr.g, pr.rt, pr.in, pr.requestID, pr.requestIDs, pr.start, pr.model = g, rt, r, requestID[0], requestID, g.opts.Now(), -1
	pr.hops = g.hop
	if hops := r.Header[egress.HopHeader]; len(hops) > 0 {
		pr.hops = []string{egress.NextHops(hops, g.opts.ID)}
	}
	defer func() {
		if pr.body != nil {
			pr.body.release()
		}
		proxyRequests.Put(pr)
	}()

	ws := rt.workspace
	if !table.HasWorkspace(ws) {
		ws = ""
	}
	base := r.Context()
	if g.tracer != nil {
		base = g.startRequestSpan(pr, r)
	}
	ctx, cancel := context.WithCancelCause(base)
	pr.ctx, pr.cancel = context.WithValue(ctx, proxyRequestKey{}, pr), cancel
	defer cancel(nil)
	// The gateway reads the body, and proxies, through a copy of r whose body has the gateway's
	// limits; the server keeps r.Body as it came, so that past the body limit it can still
	// answer and close the connection gracefully.
	pr.out = r.WithContext(pr.ctx)
	if hasBody(r) {
		g.limitBody(w, pr.out)
	}
	e := g.resolve(pr, table)
	if e == nil {
		e = g.admit(w, pr, table)
	}
	if e == nil && pr.entity != nil {
		if e = g.hold(pr, table, ws); e != nil && pr.budgeted {
			pr.notRun, pr.status = true, e.status
			g.finishBudget(pr) // what it reserved goes back
		}
	}
	if e != nil {
		entityLabel := ""
		if pr.entity != nil {
			entityLabel = pr.entity.Name
		}
		if pr.body != nil {
			// What it holds goes back to the budget before refuse reads what remains of the
			// body to nothing, which may take the client a while.
			pr.body.release()
			pr.body = nil
		}
		refuse(w, pr.out, e)
		g.answered(w, r, rt, ws, entityLabel, e.status, pr.start)
		if pr.span != nil {
			pr.nameRequestSpan()
			pr.endRequestSpan(e.status)
		}
		return
	}
	if pr.span != nil {
		pr.nameRequestSpan()
	}
	defer g.finish(pr)
	g.proxy.ServeHTTP(w, pr.out)
}

func isJSON(ct string) bool {
	ct, _, _ = strings.Cut(ct, ";")
	ct = strings.TrimSpace(ct)
	return strings.EqualFold(ct, "application/json") || strings.HasSuffix(strings.ToLower(ct), "+json")
}

func isSSE(ct string) bool {
	ct, _, _ = strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(ct), "text/event-stream")
}

// rewrite shapes the outbound request: the client's credentials and forwarding headers go,
// the request id goes up. The provider's URL, key and extras are set per attempt in RoundTrip.
func (g *Gateway) rewrite(p *httputil.ProxyRequest) {
	pr := fromContext(p.In.Context())
	h := p.Out.Header
	for name := range h {
		if strings.HasPrefix(name, "X-Forwarded-") {
			delete(h, name)
		}
	}
	for _, name := range clientOnlyHeaders {
		delete(h, name)
	}
	if pr.entity != nil || pr.budgeted {
		// The response must come back uncompressed so that its model can be rewritten and its
		// usage read.
		delete(h, "Accept-Encoding")
	}
}

// clientOnlyHeaders never reach an upstream: credentials of the client, and forwarding
// headers that would disclose the client's network.
var clientOnlyHeaders = []string{"Authorization", "Proxy-Authorization", "X-Api-Key", "Cookie", "Forwarded", "X-Real-Ip", PriorityHeader}

// RoundTrip sends one request upstream, trying up to MaxAttempts providers of an entity:
// a connection failure or an answer of 429, 502, 503 or 504 moves on to another provider,
// since nothing has reached the client yet.
func (g *Gateway) RoundTrip(out *http.Request) (*http.Response, error) {
	pr := fromContext(out.Context())
	var pristine http.Header
	if pr.entity != nil && pr.replayable && len(pr.entity.Backends) > 1 && g.opts.MaxAttempts > 1 {
		pristine = out.Header.Clone()
	}
	for attempt := 0; ; attempt++ {
		now := g.opts.Now()
		p := pr.provider
		var served []byte
		if pr.entity != nil {
			idx, choice := pr.entity.Pick(now, pr.tried, pr.blocks)
			if choice == routing.NoBackend {
				return nil, errUpstreamUnreachable(pr.entity.ID)
			}
			g.metrics.picked(pr.entity.Balancing, choice)
			pr.tried |= 1 << idx
			pr.backend = &pr.entity.Backends[idx]
			p, served = pr.backend.Provider, pr.backend.ServedModelJSON
			// The server is about to read the prompt: it will probably hold its blocks.
			p.Prefixes.Add(pr.blocks)
		}
		pr.current, pr.timeouts = p, p.Timeouts.WithDefaults(g.opts.Timeouts)
		req := out
		if attempt > 0 {
			r2 := *out
			r2.Header = pristine.Clone()
			req = &r2
		}
		g.prepare(req, pr, p, served)
		pr.attempts++
		if g.tracer != nil {
			g.startAttempt(pr, req, p, served)
		}
		p.Health.Begin()
		pr.began, pr.sent = true, now
		if pr.queue != nil {
			pr.queue.Started(&pr.ticket) // the provider's load counts it now
		}
		resp, err := g.transportFor(pr.timeouts).RoundTrip(req)

		retryAfter := time.Duration(0)
		reason := ""
		safe := false // the request provably did not run upstream
		switch {
		case err != nil:
			if pr.in.Context().Err() != nil {
				return nil, err // the client went away
			}
			reason, safe = failureOf(err)
		case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusServiceUnavailable:
			reason, safe = codeLabel(resp.StatusCode), true
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		case resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusGatewayTimeout:
			reason = codeLabel(resp.StatusCode)
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		}
		if reason == "" && pr.entity != nil {
			if err = pr.awaitFirstBytes(resp); err != nil {
				if pr.ctx.Err() != nil {
					return nil, err // the client went away, or the stream idle timeout ended the request
				}
				resp = nil
				reason, safe = failureOf(err)
			}
		}
		if pr.entity == nil {
			// The provider route is a raw pass-through: one attempt, no ejections.
			return resp, err
		}
		if reason == "" {
			if resp.StatusCode < 500 {
				p.Health.Succeeded()
			}
			return resp, nil
		}
		if pr.attemptSpan != nil {
			code := 0
			if resp != nil {
				code = resp.StatusCode
			}
			pr.endAttempt(reason, code)
		}
		if d := p.Health.Failed(now, retryAfter, g.opts.Policy); d > 0 {
			g.metrics.ejections.WithLabelValues(p.Workspace, p.Name).Inc()
			g.log.V(1).Info("provider ejected", "provider", p.ID, "for", d.String(), "reason", reason, "requestID", pr.requestID)
		}
		canRetry := (safe || pr.entity.RetryOn&retryCondition(reason) != 0) &&
			pr.replayable && attempt+1 < g.opts.MaxAttempts && bits.OnesCount64(pr.tried) < len(pr.entity.Backends)
		if !canRetry {
			pr.notRun = safe && resp == nil
			return resp, err
		}
		g.metrics.retries.WithLabelValues(p.Workspace, pr.entity.Name, p.Name, reason).Inc()
		g.log.V(1).Info("retrying on another provider", "provider", p.ID, "reason", reason, "requestID", pr.requestID)
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		p.Health.End()
		pr.began = false
	}
}

// Reasons of failed attempts, as metric labels, besides the status codes.
const (
	reasonConnect = "connect" // no connection was made: the request did not run
	reasonSend    = "send"    // the connection failed while the request was sent: it did not run
	reasonTimeout = "timeout" // no response headers in time
	reasonReset   = "reset"   // the connection failed once the request was sent
)

// failureOf classifies an attempt's error, and tells whether the request provably did not
// run upstream: a failed dial (refused, unreachable, not allowed, timed out connecting), or a
// connection that failed while the request was written, such as a kept-alive one the upstream
// had closed (an upstream does not run a request it has not received whole; bodies that could
// be streamed in are not retried anyway). A kept-alive connection found closed before anything
// was written is retried by the transport itself.
func failureOf(err error) (reason string, safe bool) {
	var op *net.OpError
	if errors.As(err, &op) {
		switch op.Op {
		case "dial":
			return reasonConnect, true
		case "write", "readfrom":
			return reasonSend, true
		}
	}
	if isTimeout(err) {
		return reasonTimeout, false
	}
	return reasonReset, false
}

// retryCondition is the entity opt-in that allows retrying after a failure of this reason.
func retryCondition(reason string) routing.RetryOn {
	switch reason {
	case "502", "504":
		return routing.RetryGatewayError
	case reasonTimeout:
		return routing.RetryTimeout
	case reasonReset:
		return routing.RetryReset
	}
	return 0
}

// prepare points req at provider p: URL, credentials, extra headers and the body.
func (g *Gateway) prepare(req *http.Request, pr *proxyRequest, p *routing.Provider, served []byte) {
	u := *p.URL
	trailing := pr.rt.trailing
	if strings.IndexByte(trailing, '%') >= 0 {
		escaped := upstreamPath(p.URL.EscapedPath(), p.BaseEndsInV1, trailing)
		if path, err := url.PathUnescape(escaped); err == nil {
			u.Path, u.RawPath = path, escaped
		} else {
			u.Path = upstreamPath(p.URL.Path, p.BaseEndsInV1, trailing)
		}
	} else {
		u.Path = upstreamPath(p.URL.Path, p.BaseEndsInV1, trailing)
	}
	u.RawQuery = pr.in.URL.RawQuery
	req.URL = &u
	req.Host = ""

	h := req.Header
	for _, d := range p.DefaultHeaders {
		if _, ok := h[d.Name]; !ok {
			h[d.Name] = d.Values
		}
	}
	for _, d := range p.RequiredHeaders {
		h[d.Name] = d.Values
	}
	if p.AuthHeader != "" {
		h[p.AuthHeader] = p.AuthValues
	}
	// Last, so that nothing a Provider sets can replace them (the routing table drops such
	// names too: routing.ReservedHeader).
	h["X-Request-Id"] = pr.requestIDs
	h[egress.HopHeader] = pr.hops

	if pr.body == nil {
		return // streamed through (or no body)
	}
	var segs [][]byte
	if pr.object {
		segs = requestBody(make([][]byte, 0, 4), pr.body.b, pr.members, pr.model, pr.setModel, served, p, pr.overrides)
	} else {
		segs = [][]byte{pr.body.b}
	}
	// The transport writes Content-Length from req.ContentLength.
	n := segmentsLen(segs)
	req.ContentLength = n
	if n == 0 {
		req.Body, req.GetBody = http.NoBody, nil
		return
	}
	buf := pr.body
	req.Body = newSegments(segs, buf)
	// GetBody lets the transport replay the body on a fresh connection when a kept-alive one
	// turns out to be closed.
	req.GetBody = func() (io.ReadCloser, error) { return newSegments(segs, buf), nil }
}

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
		return errUpstreamAuth(pr.current.ID, resp.StatusCode)
	}
	pr.rw.served = []byte(pr.backend.ServedModel)
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

func (pr *proxyRequest) currentID() string {
	if pr.current != nil {
		return pr.current.ID
	}
	if pr.entity != nil {
		return "of " + pr.entity.ID
	}
	return ""
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// finish records the outcome of a proxied request once its response is over.
func (g *Gateway) finish(pr *proxyRequest) {
	now := g.opts.Now()
	if pr.began {
		pr.current.Health.End()
		pr.began = false
	}
	if pr.streaming {
		pr.current.Health.StreamEnd()
		pr.streaming = false
	}
	if !pr.firstEvent.IsZero() {
		pr.current.Health.ObserveStream(now, pr.firstEvent.Sub(pr.sent), pr.timePerToken(now))
	}
	ws, entity, provider := pr.rt.workspace, "", ""
	if pr.entity != nil {
		entity = pr.entity.Name
	}
	if pr.current != nil {
		provider = pr.current.Name
	}
	status := pr.status
	if status == 0 {
		status = 499
	}
	route := pr.rt.kind.String()
	m := g.metrics
	m.requests.WithLabelValues(ws, entity, provider, route, codeLabel(status)).Inc()
	m.duration.WithLabelValues(ws, entity, provider, route).Observe(now.Sub(pr.start).Seconds())
	if pr.ttfb > 0 {
		m.ttfb.WithLabelValues(ws, entity, provider, route).Observe(pr.ttfb.Seconds())
	}
	if !pr.firstEvent.IsZero() && entity != "" {
		m.ttft.WithLabelValues(ws, entity, provider).Observe(pr.firstEvent.Sub(pr.start).Seconds())
	}
	g.finishBudget(pr)
	g.released(pr)
	if pr.usage.seen && entity != "" {
		m.promptTokens.WithLabelValues(ws, entity, provider).Add(float64(pr.usage.prompt))
		m.completionTokens.WithLabelValues(ws, entity, provider).Add(float64(pr.usage.completion))
	}
	if pr.attemptSpan != nil {
		reason := ""
		if status >= 500 || status == 499 {
			reason = codeLabel(status)
		}
		pr.endAttempt(reason, pr.status)
	}
	if pr.span != nil {
		pr.endRequestSpan(status)
	}
	if g.opts.AccessLog {
		var ttft time.Duration
		if !pr.firstEvent.IsZero() {
			ttft = pr.firstEvent.Sub(pr.start)
		}
		g.logAccess(pr.in, pr.start, accessEntry{requestID: pr.requestID, workspace: pr.rt.workspace, entity: entity, provider: provider,
			status: status, attempts: pr.attempts, ttft: ttft, usage: &pr.usage})
	}
}

// timePerToken is a stream's time per output token after the first: by the usage it reported,
// else by its data events (most servers send a token per event). 0 with a single token.
func (pr *proxyRequest) timePerToken(end time.Time) time.Duration {
	tokens := pr.events
	if pr.usage.seen && pr.usage.completion > 0 {
		tokens = pr.usage.completion
	}
	if tokens < 2 {
		return 0
	}
	return end.Sub(pr.firstEvent) / time.Duration(tokens-1)
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
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
