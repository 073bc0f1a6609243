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
	"context"
	"net/http"

	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// Access authenticates the callers of the gateway and authorizes their requests.
// access.Checker implements it with TokenReviews and SubjectAccessReviews.
type Access interface {
	// Authenticate returns the user whose credentials r carries. ok is false when r carries
	// none, or credentials the cluster refuses; err is set when the cluster could not be asked.
	Authenticate(r *http.Request) (u user.Info, ok bool, err error)
	// Authorize reports whether a may be done; err is set when the cluster could not be asked.
	Authorize(ctx context.Context, a authorizer.Attributes) (allowed bool, reason string, err error)
	// AuthorizeListed is Authorize for the reviews that a model list makes per entity, which
	// must not crowd out those of other requests (access.Checker gives them a lane of their
	// own).
	AuthorizeListed(ctx context.Context, a authorizer.Attributes) (allowed bool, reason string, err error)
}

type userKey struct{}

// userFrom returns the authenticated caller of a request, or nil when the gateway does not
// authenticate.
func userFrom(ctx context.Context) user.Info {
	u, _ := ctx.Value(userKey{}).(user.Info)
	return u
}

// withAuthentication serves next with the caller of each request in its context, and answers
// 401 itself when a request carries no credentials the cluster accepts, or 503 when the
// cluster could not be asked. Like the API server's own filter, it runs before routing: an
// unauthenticated caller learns nothing about routes, workspaces or names.
func (g *Gateway) withAuthentication(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok, err := g.opts.Access.Authenticate(r)
		switch {
		case err != nil:
			g.log.V(1).Info("authentication failed: the API server could not be asked", "error", err.Error(), "requestID", w.Header().Get("X-Request-Id"))
			g.failUnrouted(w, r, errAccessUnavailable())
		case !ok:
			w.Header().Set("WWW-Authenticate", "Bearer")
			g.failUnrouted(w, r, errUnauthenticated(r.Header.Get("Authorization") != ""))
		default:
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
		}
	})
}
