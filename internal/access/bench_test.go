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

package access_test

import (
	"context"
	"net/http"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/infergate/infergate/internal/access"
	"github.com/infergate/infergate/internal/testenv"
)

// BenchmarkCheckerWarm is what the gateway pays per request once the token and the decision
// are cached: one Authenticate and one Authorize. It can run with -count.
func BenchmarkCheckerWarm(b *testing.B) {
	checker, r, _ := benchCaller(b)
	auth := r.Header["Authorization"]
	check := func() {
		r.Header["Authorization"] = auth // the authenticator takes it off the request it accepts
		u, ok, err := checker.Authenticate(r)
		if !ok || err != nil {
			b.Fatalf("authenticate: %v %v", ok, err)
		}
		allowed, _, err := checker.Authorize(r.Context(), benchCall(u))
		if !allowed || err != nil {
			b.Fatalf("authorize: %v %v", allowed, err)
		}
	}
	check()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		check()
	}
}

// BenchmarkAuthorizeWarm is the Authorize of BenchmarkCheckerWarm alone: a cached decision.
func BenchmarkAuthorizeWarm(b *testing.B) {
	checker, r, u := benchCaller(b)
	a := benchCall(u)
	ctx := r.Context()
	b.ReportAllocs()
	for b.Loop() {
		if allowed, _, err := checker.Authorize(ctx, a); !allowed || err != nil {
			b.Fatalf("authorize: %v %v", allowed, err)
		}
	}
}

// benchCaller returns a checker, a request with the token of a ServiceAccount that may create
// modelentities/proxy in namespace bench, and its user.
func benchCaller(b *testing.B) (*access.Checker, *http.Request, user.Info) {
	b.Helper()
	ctx := context.Background()
	token, err := testenv.ServiceAccountToken(ctx, cfg, "bench", "caller")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := clientset.RbacV1().Roles("bench").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "call"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"inference.infergate.dev"}, Resources: []string{"modelentities/proxy"}, Verbs: []string{"create"}}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	if _, err := clientset.RbacV1().RoleBindings("bench").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "call"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "call"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "caller", Namespace: "bench"}}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		b.Fatal(err)
	}
	checker, err := access.New(cfg, access.Options{})
	if err != nil {
		b.Fatal(err)
	}
	r := bearer(token)
	auth := r.Header["Authorization"]
	u, ok, err := checker.Authenticate(r)
	if !ok || err != nil {
		b.Fatalf("authenticate: %v %v", ok, err)
	}
	r.Header["Authorization"] = auth
	if allowed, _, err := checker.Authorize(ctx, benchCall(u)); !allowed || err != nil {
		b.Fatalf("authorize: %v %v", allowed, err)
	}
	return checker, r, u
}

func benchCall(u user.Info) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{User: u, Verb: "create", Namespace: "bench",
		APIGroup: "inference.infergate.dev", Resource: "modelentities", Subresource: "proxy", Name: "llama", ResourceRequest: true}
}
