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
	"net/http"
	"strings"

	"github.com/infergate/infergate/internal/jsonfield"
	"github.com/infergate/infergate/internal/naming"
	"github.com/infergate/infergate/internal/routing"
)

// resolve finds what a proxied request goes to, authorizes it, and reads its body when the
// route needs it. The caller is authorized before its body is read whole wherever the route
// tells what it asks for: the model and provider routes by their path, the OpenAI route as
// soon as the body's `model` has arrived.
func (g *Gateway) resolve(pr *proxyRequest, table *routing.Table) *apiError {
	switch pr.rt.kind {
	case routeProvider:
		return g.resolveProvider(pr, table)
	case routeEntity:
		return g.resolveEntity(pr, table)
	case routeOpenAI:
		return g.resolveOpenAI(pr, table)
	}
	return errUnknownRoute()
}

// resolveProvider serves the provider route: a raw pass-through to one Ready provider, whose
// body is read only to add the provider's body fields.
func (g *Gateway) resolveProvider(pr *proxyRequest, table *routing.Table) *apiError {
	rt := pr.rt
	if !naming.Valid(rt.name) {
		return errInvalidName("name")
	}
	if e := g.authorize(pr.in, rt.workspace, verbOf(pr.in.Method), resourceProviders, subresourceProxy, rt.name); e != nil {
		return e
	}
	p, ok := table.Provider(rt.workspace, rt.name)
	if !ok {
		return errProviderNotFound(rt.workspace + "/" + rt.name)
	}
	if p.MissingCredentials {
		return errMissingCredentials(p.ID)
	}
	if !p.Ready {
		return errProviderUnavailable(p.ID)
	}
	pr.provider = p
	// The body is read to add the provider's fields, or to hold the request to its budgets:
	// to estimate its tokens and lower its output cap.
	budgeted := g.limiter != nil && len(table.Budgets(rt.workspace)) > 0
	if !budgeted && (len(p.DefaultBody)+len(p.RequiredBody) == 0 || !isJSON(pr.in.Header.Get("Content-Type"))) {
		return nil // streamed through as it comes
	}
	if !hasBody(pr.in) {
		return nil
	}
	br, e := g.startBody(pr)
	if e != nil {
		return e
	}
	if err := br.read(nil); err != nil {
		return g.bodyError(err)
	}
	if members, err := jsonfield.Members(pr.members[:0], pr.body.b); err == nil {
		pr.members, pr.object = members, true // the provider's fields can be added
	}
	return nil
}

// resolveEntity serves the model route: the entity is in the path, and the body, when there
// is one, must be a JSON object whose `model` the gateway can set.
func (g *Gateway) resolveEntity(pr *proxyRequest, table *routing.Table) *apiError {
	rt := pr.rt
	if !naming.Valid(rt.name) {
		return errInvalidName("name")
	}
	if e := g.authorize(pr.in, rt.workspace, verbOf(pr.in.Method), resourceModelEntities, subresourceProxy, rt.name); e != nil {
		return e
	}
	e, ok := table.Entity(rt.workspace, rt.name)
	if !ok {
		return errEntityNotFound(rt.workspace + "/" + rt.name)
	}
	pr.entity = e
	if e := allowed(pr, e); e != nil {
		return e
	}
	if !e.Routable() {
		return errNoReadyProvider(e.ID)
	}
	if !hasBody(pr.in) {
		pr.replayable = true
		return nil
	}
	if ct := pr.in.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		return errUnsupportedMediaType(ct)
	}
	br, apiErr := g.startBody(pr)
	if apiErr != nil {
		return apiErr
	}
	if err := br.read(nil); err != nil {
		return g.bodyError(err)
	}
	pr.replayable, pr.setModel = true, true
	if len(pr.body.b) == 0 {
		return nil
	}
	if apiErr := pr.parseBody(); apiErr != nil {
		return apiErr
	}
	pr.setPrefix()
	return nil
}

// resolveOpenAI serves the OpenAI route: the entity is the body's `model`. The body is read
// until `model` has arrived, the caller is authorized for it, and only then is the rest read:
// a caller without rights does not get to make the gateway hold a large body.
func (g *Gateway) resolveOpenAI(pr *proxyRequest, table *routing.Table) *apiError {
	rt := pr.rt
	br, apiErr := g.startBody(pr)
	if apiErr != nil {
		return apiErr
	}
	var (
		prefix jsonfield.Prefix
		model  jsonfield.Member
		found  bool
	)
	err := br.read(func(b []byte) bool {
		n := len(pr.members)
		pr.members = prefix.Next(pr.members, b)
		for _, m := range pr.members[n:] {
			if m.KeyEqualFold(b, "model") {
				model, found = m, true
				return true
			}
		}
		return false
	})
	if err != nil {
		return g.bodyError(err)
	}
	var entity string
	if found {
		// Authorize what the body asks for before reading the rest of it. Once it is read
		// whole, parseBody checks that this was its only model.
		if entity, apiErr = pr.entityOf(model); apiErr != nil {
			return apiErr
		}
		if e := g.authorize(pr.in, rt.workspace, verbOf(pr.in.Method), resourceModelEntities, subresourceProxy, entity); e != nil {
			return e
		}
	}
	if err := br.read(nil); err != nil {
		return g.bodyError(err)
	}
	pr.replayable, pr.setModel = true, true
	if apiErr := pr.parseBody(); apiErr != nil {
		return apiErr
	}
	if pr.model < 0 {
		return errNoModel("the body has no 'model' field")
	}
	if !found {
		if entity, apiErr = pr.entityOf(pr.members[pr.model]); apiErr != nil {
			return apiErr
		}
		if e := g.authorize(pr.in, rt.workspace, verbOf(pr.in.Method), resourceModelEntities, subresourceProxy, entity); e != nil {
			return e
		}
	} else if pr.members[pr.model] != model {
		return errDuplicateModel() // cannot be: the model found first is the only one
	}
	e, ok := table.Entity(rt.workspace, entity)
	if !ok {
		return errEntityNotFound(rt.workspace + "/" + entity)
	}
	pr.entity = e
	if e := allowed(pr, e); e != nil {
		return e
	}
	if !e.Routable() {
		return errNoReadyProvider(e.ID)
	}
	pr.setPrefix()
	return nil
}

// entityOf returns the entity that the `model` member m of the body names: "name" or
// "workspace/name", in the path's workspace.
func (pr *proxyRequest) entityOf(m jsonfield.Member) (string, *apiError) {
	b := pr.body.b
	if !m.KeyIs(b, "model") {
		return "", errDuplicateModel() // `Model` or `MODEL`: a server that folds case would read it
	}
	model, ok := jsonfield.StringValue(m.Value(b))
	if !ok {
		return "", errNoModel("'model' must be a string")
	}
	entity := string(model)
	if ws, rest, found := strings.Cut(entity, "/"); found {
		if ws != pr.rt.workspace {
			return "", errWorkspaceMismatch(ws, pr.rt.workspace)
		}
		entity = rest
	}
	if !naming.Valid(entity) {
		return "", errInvalidName("model")
	}
	return entity, nil
}

// parseBody validates the body read whole as one JSON object and finds its `model`, which must
// appear once, as `model`: a server that matches keys regardless of case, as Go's
// encoding/json does, would read `Model` too.
func (pr *proxyRequest) parseBody() *apiError {
	b := pr.body.b
	members, err := jsonfield.Members(pr.members[:0], b)
	pr.members = members
	if err != nil {
		pr.members = pr.members[:0]
		return errInvalidBody(err)
	}
	pr.object, pr.model = true, -1
	for i, m := range members {
		if !m.KeyEqualFold(b, "model") {
			continue
		}
		if pr.model >= 0 || !m.KeyIs(b, "model") {
			return errDuplicateModel()
		}
		pr.model = i
	}
	return nil
}

// allowed refuses what the entity routes do not serve for e: a trailing path that is not one
// of its inference paths, or another method than POST on one.
func allowed(pr *proxyRequest, e *routing.Entity) *apiError {
	if !e.AllowsPath(pr.rt.trailing) {
		return errPathNotAllowed(e, pr.rt.trailing)
	}
	if pr.in.Method != routing.PathMethod {
		return errMethodNotAllowed(pr.in.Method, routing.PathMethod)
	}
	return nil
}

// startBody starts reading the request's body into the buffer of pr, held in the share of
// its caller.
func (g *Gateway) startBody(pr *proxyRequest) (*bodyReader, *apiError) {
	br, err := newBodyReader(pr.out, g.opts.MaxBodyBytes, &g.buffers, callerOf(userFrom(pr.in.Context())))
	if err != nil {
		return nil, g.bodyError(err)
	}
	pr.body, pr.model = br.bb, -1
	return br, nil
}

func (g *Gateway) bodyError(err error) *apiError {
	switch {
	case errors.Is(err, errTooLarge):
		return errBodyTooLarge(g.opts.MaxBodyBytes)
	case errors.Is(err, errOverShare):
		return errCallerBusy()
	case errors.Is(err, errOverBudget):
		return errBusy()
	case isTimeout(err):
		return errBodyTimeout(g.opts.BodyReadTimeout)
	}
	return errInvalidBody(err)
}

func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}
