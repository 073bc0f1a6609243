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

// The handler: routes, the answers the gateway gives itself, and a proxied request's way
// through: resolve (resolve.go), admit to budgets (limits.go), hold for capacity (queue.go),
// then the reverse proxy: outbound.go shapes the request, attempt.go sends it, response.go
// rewrites the answer, finish.go records the outcome.

package gateway

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/naming"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/routing"
)

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
		if !ok || !e.Routable() {
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
		quota: quota.Request{Counters: pr.quota.Counters[:0]}, decision: pr.decision.Reuse(), overrides: pr.overrides[:0], plan: pr.plan[:0]}
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
	pr.label = ws
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
		if e = g.planTargets(pr); e == nil {
			e = g.hold(pr, table)
		}
		if e != nil && pr.budgeted {
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
