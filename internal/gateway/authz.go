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
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/infergate/infergate/internal/routing"
)

// The resources that gateway requests are authorized against, in the path's workspace, as the
// API server's own services/proxy and pods/proxy: `kubectl auth can-i create
// modelentities/proxy -n team` answers whether a caller may send chat completions there.
const (
	apiGroup              = "inference.infergate.dev"
	resourceModelEntities = "modelentities"
	resourceProviders     = "providers"
	subresourceProxy      = "proxy"
)

// MaxListedByName is the most routable entities that a model list reviews one by one, for a
// caller who may not get all the entities of the workspace (such as one whose Role names some
// with resourceNames). In a larger workspace such a caller is answered 403 after the single
// review without a name, and reads models one at a time with GET …/v1/models/{name}: one
// list never costs more than 1+MaxListedByName SubjectAccessReviews, whatever the size of the
// workspace. 64 covers a workspace of hand-written entities, and keeps a caller's list under
// a second even with reviews of tens of milliseconds.
const MaxListedByName = 64

// listReviewWorkers bounds the per-entity reviews in flight for one model list; the access
// checker bounds those of all lists together (access.Checker.AuthorizeListed).
const listReviewWorkers = 8

// verbOf maps an HTTP method to the verb it is authorized as, as the API server does for its
// proxy subresources. Other methods are their lower-case names, which RBAC grants only when a
// rule names them.
func verbOf(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead:
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(method)
}

// authorize answers nil when the caller of r may use verb on resource/subresource name in
// workspace ws, or when the gateway does not authorize; else 403, or 503 when the cluster
// could not be asked. The workspace is always the path's: an entity served by a provider of
// the system workspace needs rights on the entity only.
func (g *Gateway) authorize(r *http.Request, ws, verb, resource, subresource, name string) *apiError {
	if g.opts.Access == nil {
		return nil
	}
	return g.decide(r, resourceAttributes(r, ws, verb, resource, subresource, name))
}

// authorizePath is authorize for a path that is not a resource, such as /metrics.
func (g *Gateway) authorizePath(r *http.Request) *apiError {
	if g.opts.Access == nil {
		return nil
	}
	return g.decide(r, authorizer.AttributesRecord{User: userFrom(r.Context()), Verb: verbOf(r.Method), Path: r.URL.Path})
}

func resourceAttributes(r *http.Request, ws, verb, resource, subresource, name string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{User: userFrom(r.Context()), Verb: verb, Namespace: ws,
		APIGroup: apiGroup, Resource: resource, Subresource: subresource, Name: name, ResourceRequest: true}
}

// decide is ask, with a denial worded as a 403.
func (g *Gateway) decide(r *http.Request, a authorizer.AttributesRecord) *apiError {
	allowed, reason, e := g.ask(r, a)
	switch {
	case e != nil:
		return e
	case !allowed:
		return errForbidden(a, reason)
	}
	return nil
}

// ask reports whether a is allowed, or 503 when the cluster could not be asked.
func (g *Gateway) ask(r *http.Request, a authorizer.AttributesRecord) (allowed bool, reason string, e *apiError) {
	return g.asked(g.opts.Access.Authorize(r.Context(), a))
}

// asked is an answer of Access, with 503 when the cluster could not be asked.
func (g *Gateway) asked(allowed bool, reason string, err error) (bool, string, *apiError) {
	if err != nil {
		g.log.V(1).Info("authorization failed: the API server could not be asked", "error", err.Error())
		return false, "", errAccessUnavailable()
	}
	return allowed, reason, nil
}

// listModels answers the model list of a workspace with the entities that the caller may get
// through modelentities/proxy. One review without a name settles callers who may get them all;
// for the others, each routable entity is reviewed by name (answers are cached, per caller
// identity) when there are at most MaxListedByName of them, and a caller who may get none of
// them, or who would need more reviews than that, is answered 403 (with the same words either
// way, so that a caller without rights does not learn how many entities a workspace has).
func (g *Gateway) listModels(w http.ResponseWriter, r *http.Request, rt route, ws string, table *routing.Table) {
	all := g.authorize(r, rt.workspace, "get", resourceModelEntities, subresourceProxy, "")
	if all == nil {
		g.writeJSON(w, r, rt, ws, table.ModelsJSON(rt.workspace))
		return
	}
	if all.status != http.StatusForbidden {
		g.fail(w, r, rt, ws, all)
		return
	}
	entities := table.RoutableEntities(rt.workspace)
	if len(entities) > MaxListedByName {
		g.fail(w, r, rt, ws, errListForbidden(all, rt.workspace))
		return
	}
	allowed := make([]bool, len(entities))
	var (
		wg      sync.WaitGroup
		failed  atomic.Pointer[apiError]
		workers = min(listReviewWorkers, len(entities))
	)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(entities) && failed.Load() == nil; i += workers {
				a := resourceAttributes(r, rt.workspace, "get", resourceModelEntities, subresourceProxy, entities[i].Name)
				ok, _, e := g.asked(g.opts.Access.AuthorizeListed(r.Context(), a))
				if e != nil {
					failed.CompareAndSwap(nil, e)
				}
				allowed[i] = ok
			}
		})
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		g.fail(w, r, rt, ws, e) // a partial list would hide entities without saying so
		return
	}
	visible := make([]*routing.Entity, 0, len(entities))
	for i, e := range entities {
		if allowed[i] {
			visible = append(visible, e)
		}
	}
	if len(visible) == 0 {
		g.fail(w, r, rt, ws, errListForbidden(all, rt.workspace))
		return
	}
	g.writeJSON(w, r, rt, ws, routing.ModelList(visible))
}

// errListForbidden is the 403 of a model list, denied, that says how to list or read models.
func errListForbidden(denied *apiError, workspace string) *apiError {
	return &apiError{status: http.StatusForbidden, code: denied.code, detail: fmt.Sprintf(
		"%s; listing models needs get on modelentities/proxy for all of them, or, in a workspace of at most %d models, for those to list; read a single model with GET %s%s/openai/-/v1/models/{name}",
		denied.detail, MaxListedByName, Prefix, workspace)}
}
