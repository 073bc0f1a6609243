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

package access

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

type attrs struct {
	user                          user.Info
	verb, ns, resource, sub, name string
}

func (a attrs) record() authorizer.AttributesRecord {
	return authorizer.AttributesRecord{User: a.user, Verb: a.verb, Namespace: a.ns, APIGroup: "inference.infergate.dev",
		Resource: a.resource, Subresource: a.sub, Name: a.name, ResourceRequest: true}
}

// answers is a token authenticator that gives the answers it is set to.
type answers struct {
	resp *authenticator.Response
	ok   bool
	err  error
}

func (a *answers) AuthenticateToken(context.Context, string) (*authenticator.Response, bool, error) {
	return a.resp, a.ok, a.err
}

// A token the API server refuses is forgotten at once, whichever way it refuses it: it does
// not come back in an outage. Only errors that are no answer (no connection, a timeout, 429 or
// 5xx) let the last answer stand in.
func TestOutageTokensForgetARefusedToken(t *testing.T) {
	down := &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	refusals := []struct {
		name string
		err  error
	}{
		{"refused", nil},
		// A deleted ServiceAccount's token: the webhook authenticator returns status.error.
		{"refused with status.error", errors.New(`[invalid bearer token, service account team/app has been deleted]`)},
		{"the review itself refused", apierrors.NewForbidden(schema.GroupResource{Group: "authentication.k8s.io", Resource: "tokenreviews"}, "", errors.New("no rights"))},
		{"a bad request", apierrors.NewBadRequest("malformed")},
	}
	outages := []struct {
		name string
		err  error
	}{
		{"unreachable", down},
		{"timed out", context.DeadlineExceeded},
		{"overloaded", apierrors.NewTooManyRequests("slow down", 1)},
		{"unavailable", apierrors.NewServiceUnavailable("down")},
		{"several attempts", utilerrors.NewAggregate([]error{down, apierrors.NewInternalError(errors.New("boom"))})},
	}
	for _, refusal := range refusals {
		for _, out := range outages {
			t.Run(refusal.name+", then "+out.name, func(t *testing.T) {
				next := &answers{resp: &authenticator.Response{User: &user.DefaultInfo{Name: "app"}}, ok: true}
				stale := 0
				o := &outageTokens{next: next, known: newLastKnown(time.Minute), ttl: time.Minute, onStale: func() { stale++ }}
				ctx := context.Background()

				if _, ok, err := o.AuthenticateToken(ctx, "t"); !ok || err != nil {
					t.Fatalf("accepted: %v %v", ok, err)
				}
				next.resp, next.ok, next.err = nil, false, out.err
				if resp, ok, err := o.AuthenticateToken(ctx, "t"); !ok || err != nil || resp.User.GetName() != "app" || stale != 1 {
					t.Fatalf("in an outage after an acceptance: %v %v %v, %d stale", resp, ok, err, stale)
				}
				if _, ok, err := o.AuthenticateToken(ctx, "other"); ok || err == nil {
					t.Errorf("in an outage, another token: ok %v, err %v", ok, err)
				}
				// Audiences are part of what was reviewed.
				if _, ok, _ := o.AuthenticateToken(authenticator.WithAudiences(ctx, authenticator.Audiences{"elsewhere"}), "t"); ok {
					t.Error("in an outage, the token for other audiences was accepted")
				}

				next.err = refusal.err
				if _, ok, _ := o.AuthenticateToken(ctx, "t"); ok {
					t.Fatal("accepted when the API server refused it")
				}
				next.err = out.err
				if _, ok, err := o.AuthenticateToken(ctx, "t"); ok || err == nil {
					t.Errorf("in an outage after a refusal: ok %v, err %v; want an error", ok, err)
				}
			})
		}
	}
}

func TestAttributesKeyTellsRequestsApart(t *testing.T) {
	u := &user.DefaultInfo{Name: "app", Groups: []string{"a", "b"}, Extra: map[string][]string{"x": {"1"}}}
	base := func() attrs {
		return attrs{user: u, verb: "create", ns: "team", resource: "modelentities", sub: "proxy", name: "llama"}
	}
	seen := map[string]string{attributesKey(base().record()): "base"}
	for name, change := range map[string]func(*attrs){
		"verb":      func(a *attrs) { a.verb = "get" },
		"namespace": func(a *attrs) { a.ns = "other" },
		"name":      func(a *attrs) { a.name = "llam" },
		"groups":    func(a *attrs) { a.user = &user.DefaultInfo{Name: "app", Groups: []string{"ab"}, Extra: u.Extra} },
		"extra":     func(a *attrs) { a.user = &user.DefaultInfo{Name: "app", Groups: u.Groups} },
		"user":      func(a *attrs) { a.user = &user.DefaultInfo{Name: "ap", Groups: u.Groups, Extra: u.Extra} },
	} {
		a := base()
		change(&a)
		k := attributesKey(a.record())
		if other, dup := seen[k]; dup {
			t.Errorf("changing %s gives the key of %s", name, other)
		}
		seen[k] = name
	}
}

// Fresh tokens of one ServiceAccount differ only in their credential id: one identity, one key.
func TestAttributesKeyIgnoresTheCredentialID(t *testing.T) {
	withID := func(id string) string {
		u := &user.DefaultInfo{Name: "system:serviceaccount:team:app", UID: "0b9c", Groups: []string{"system:serviceaccounts"},
			Extra: map[string][]string{user.CredentialIDKey: {id}, "authentication.kubernetes.io/pod-name": {"app-1"}}}
		return attributesKey(attrs{user: u, verb: "get", ns: "team", resource: "modelentities", sub: "proxy", name: "llama"}.record())
	}
	if withID("JTI=one") != withID("JTI=two") {
		t.Error("two tokens of one identity have different keys")
	}
	without := attributesKey(attrs{user: &user.DefaultInfo{Name: "system:serviceaccount:team:app", UID: "0b9c", Groups: []string{"system:serviceaccounts"},
		Extra: map[string][]string{"authentication.kubernetes.io/pod-name": {"app-1"}}}, verb: "get", ns: "team", resource: "modelentities", sub: "proxy", name: "llama"}.record())
	if without != withID("JTI=one") {
		t.Error("a user without a credential id has another key than the same user with one")
	}
}
