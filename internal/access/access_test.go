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
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/infergate/infergate/internal/access"
	"github.com/infergate/infergate/internal/testenv"
	"github.com/infergate/infergate/internal/testutil"
)

var (
	cfg       *rest.Config
	clientset *kubernetes.Clientset
)

func TestMain(m *testing.M) {
	env, err := testenv.Start(testenv.Options{WithoutCRDs: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cfg = env.Config
	clientset = kubernetes.NewForConfigOrDie(cfg)
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

// serviceAccount creates a ServiceAccount and returns a token for it from the TokenRequest
// API, for the given audiences (none: the API server's own).
func serviceAccount(t *testing.T, ns, name string, audiences ...string) string {
	t.Helper()
	token, err := testenv.ServiceAccountToken(context.Background(), cfg, ns, name, audiences...)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func bearer(token string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://gateway.test/", nil)
	if token != "" {
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r
}

func newChecker(t *testing.T, c *rest.Config, opts access.Options) (*access.Checker, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	ch, err := access.New(c, opts)
	if err != nil {
		t.Fatal(err)
	}
	return ch, reg
}

func TestAuthenticate(t *testing.T) {
	plain := serviceAccount(t, "authn", "app")
	bound := serviceAccount(t, "authn", "bound", "infergate")
	anyAudience, reg := newChecker(t, cfg, access.Options{})
	audience, _ := newChecker(t, cfg, access.Options{Audiences: []string{"infergate"}})

	tests := []struct {
		name    string
		checker *access.Checker
		token   string
		user    string // empty: refused
	}{
		{"no token", anyAudience, "", ""},
		{"a token the API server never issued", anyAudience, "not-a-kubernetes-token", ""},
		{"a forged token", anyAudience, plain[:len(plain)-4] + "AAAA", ""},
		{"a ServiceAccount token", anyAudience, plain, "system:serviceaccount:authn:app"},
		{"a token for another audience", anyAudience, bound, ""},
		{"a projected token for the gateway's audience", audience, bound, "system:serviceaccount:authn:bound"},
		{"a token for the API server, where the gateway wants its own audience", audience, plain, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, ok, err := tt.checker.Authenticate(bearer(tt.token))
			if err != nil {
				t.Fatalf("a refusal must not look like an outage: %v", err)
			}
			switch {
			case tt.user == "" && ok:
				t.Errorf("accepted as %q", u.GetName())
			case tt.user != "" && (!ok || u.GetName() != tt.user):
				t.Errorf("got %v %v, want user %q", u, ok, tt.user)
			}
			if ok && !slices.Contains(u.GetGroups(), "system:authenticated") {
				t.Errorf("groups %v lack system:authenticated", u.GetGroups())
			}
		})
	}

	// The answer is cached: the same token again costs no TokenReview.
	before := value(t, reg, "infergate_gateway_auth_reviews_total", "kind", "TokenReview")
	for i := 0; i < 3; i++ {
		if _, ok, _ := anyAudience.Authenticate(bearer(plain)); !ok {
			t.Fatal("refused on a second look")
		}
	}
	if after := value(t, reg, "infergate_gateway_auth_reviews_total", "kind", "TokenReview"); after != before {
		t.Errorf("%v TokenReviews for a cached token", after-before)
	}
	if hits := value(t, reg, "infergate_gateway_auth_cache_requests_total", "cache", "token", "result", "hit"); hits < 3 {
		t.Errorf("token cache hits %v, want at least 3", hits)
	}
	if v := value(t, reg, "infergate_gateway_auth_decisions_total", "step", "authentication", "decision", "denied"); v != 4 {
		t.Errorf("denied authentications %v, want 4", v)
	}
}

func TestAuthorizeFollowsRBAC(t *testing.T) {
	ctx := context.Background()
	token := serviceAccount(t, "authz-a", "app")
	serviceAccount(t, "authz-b", "other")
	checker, _ := newChecker(t, cfg, access.Options{})
	u := caller(t, token)
	call := func(ns, verb string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: u, Verb: verb, Namespace: ns, APIGroup: "inference.infergate.dev",
			Resource: "modelentities", Subresource: "proxy", Name: "llama", ResourceRequest: true}
	}
	if allowed, _, err := checker.Authorize(ctx, call("authz-a", "create")); allowed || err != nil {
		t.Fatalf("allowed %v, err %v before any RoleBinding", allowed, err)
	}

	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "call", Namespace: "authz-a"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"inference.infergate.dev"}, Resources: []string{"modelentities/proxy"}, Verbs: []string{"create"}}}}
	if _, err := clientset.RbacV1().Roles("authz-a").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "call", Namespace: "authz-a"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "call"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "app", Namespace: "authz-a"}}}
	if _, err := clientset.RbacV1().RoleBindings("authz-a").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A fresh checker: the first one cached the denial.
	checker, reg := newChecker(t, cfg, access.Options{})
	tests := []struct {
		ns, verb string
		allowed  bool
	}{
		{"authz-a", "create", true},
		{"authz-a", "get", false},
		{"authz-b", "create", false},
	}
	for _, tt := range tests {
		for i := 0; i < 2; i++ {
			allowed, _, err := checker.Authorize(ctx, call(tt.ns, tt.verb))
			if err != nil || allowed != tt.allowed {
				t.Errorf("%s in %s: allowed %v, err %v; want %v", tt.verb, tt.ns, allowed, err, tt.allowed)
			}
		}
	}
	if hits, misses := value(t, reg, "infergate_gateway_auth_cache_requests_total", "cache", "decision", "result", "hit"),
		value(t, reg, "infergate_gateway_auth_cache_requests_total", "cache", "decision", "result", "miss"); hits != 3 || misses != 3 {
		t.Errorf("decision cache: %v hits, %v misses; want 3 and 3", hits, misses)
	}
	if v := value(t, reg, "infergate_gateway_auth_reviews_total", "kind", "SubjectAccessReview", "code", "201"); v != 3 {
		t.Errorf("%v SubjectAccessReviews sent, want 3", v)
	}
}

// Fresh tokens of one ServiceAccount, each with its own credential id, share the decisions of
// their identity: a caller minting tokens does not make a review per request.
func TestFreshTokensShareDecisions(t *testing.T) {
	const ns = "fresh-tokens"
	checker, reg := newChecker(t, cfg, access.Options{})
	ids := map[string]bool{}
	for i := range 3 {
		u, ok, err := checker.Authenticate(bearer(serviceAccount(t, ns, "app")))
		if !ok || err != nil {
			t.Fatalf("authenticate token %d: %v %v", i, ok, err)
		}
		if id := u.GetExtra()[user.CredentialIDKey]; len(id) == 1 {
			ids[id[0]] = true
		}
		for _, name := range []string{"", "llama"} {
			allowed, _, err := checker.Authorize(context.Background(), authorizer.AttributesRecord{User: u, Verb: "get", Namespace: ns,
				APIGroup: "inference.infergate.dev", Resource: "modelentities", Subresource: "proxy", Name: name, ResourceRequest: true})
			if allowed || err != nil {
				t.Fatalf("token %d, name %q: allowed %v, err %v; want denied", i, name, allowed, err)
			}
		}
	}
	if len(ids) != 3 {
		t.Fatalf("credential ids %v: want 3 tokens that differ in theirs", ids)
	}
	if v := value(t, reg, "infergate_gateway_auth_reviews_total", "kind", "SubjectAccessReview"); v != 2 {
		t.Errorf("%v SubjectAccessReviews for 3 tokens of one ServiceAccount asking the same 2 things, want 2", v)
	}
}

// The per-entity reviews of model lists have a lane of their own: at most ListReviewsInFlight
// of them at once, however many are asked for, and while that lane is full, the reviews of
// other requests go through.
func TestListReviewsHaveALaneOfTheirOwn(t *testing.T) {
	const ns = "list-lane"
	u := caller(t, serviceAccount(t, ns, "app"))
	gate := &heldReviews{release: make(chan struct{})}
	held := rest.CopyConfig(cfg)
	held.Wrap(func(rt http.RoundTripper) http.RoundTripper { return heldTransport{gate, rt} })
	checker, _ := newChecker(t, held, access.Options{})
	get := func(name string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: u, Verb: "get", Namespace: ns, APIGroup: "inference.infergate.dev",
			Resource: "modelentities", Subresource: "proxy", Name: name, ResourceRequest: true}
	}

	const listed = 3 * access.ListReviewsInFlight
	var wg sync.WaitGroup
	for i := range listed {
		wg.Go(func() {
			if allowed, _, err := checker.AuthorizeListed(context.Background(), get(fmt.Sprintf("held-%d", i))); allowed || err != nil {
				t.Errorf("listed review %d: allowed %v, err %v; want denied", i, allowed, err)
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for gate.inFlight() < access.ListReviewsInFlight {
		if time.Now().After(deadline) {
			t.Fatalf("%d listed reviews in flight after 30 s, want %d", gate.inFlight(), access.ListReviewsInFlight)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The list lane is full: a request's review still goes through.
	if allowed, _, err := checker.Authorize(context.Background(), get("llama")); allowed || err != nil {
		t.Errorf("a request's review while the list lane is full: allowed %v, err %v; want denied", allowed, err)
	}
	close(gate.release)
	wg.Wait()
	if most := gate.most(); most != access.ListReviewsInFlight {
		t.Errorf("at most %d listed reviews in flight, want %d", most, access.ListReviewsInFlight)
	}
}

// heldReviews holds the SubjectAccessReviews of entities named held-… until release is closed,
// and counts those in flight.
type heldReviews struct {
	release chan struct{}
	mu      sync.Mutex
	now, mx int
}

type heldTransport struct {
	*heldReviews
	next http.RoundTripper
}

func (h heldTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body == nil {
		return h.next.RoundTrip(r)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !bytes.Contains(body, []byte(`"name":"held-`)) {
		return h.next.RoundTrip(r)
	}
	h.mu.Lock()
	h.now++
	h.mx = max(h.mx, h.now)
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		h.now--
		h.mu.Unlock()
	}()
	<-h.release
	return h.next.RoundTrip(r)
}

func (h *heldReviews) inFlight() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *heldReviews) most() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mx
}

// An API server that cannot be reached is an error, never an allow nor a refused token.
func TestUnreachableAPIServer(t *testing.T) {
	token := serviceAccount(t, "unreachable", "app")
	dead := rest.CopyConfig(cfg)
	dead.Host = "https://" + testutil.FreeAddr(t)
	checker, reg := newChecker(t, dead, access.Options{})
	if _, ok, err := checker.Authenticate(bearer(token)); ok || err == nil {
		t.Errorf("authenticate without an API server: ok %v, err %v; want an error", ok, err)
	} else if strings.Contains(err.Error(), token) {
		t.Error("the error carries the token")
	}
	u := caller(t, token)
	allowed, _, err := checker.Authorize(context.Background(), authorizer.AttributesRecord{User: u, Verb: "get", Namespace: "unreachable",
		APIGroup: "inference.infergate.dev", Resource: "modelentities", Subresource: "proxy", ResourceRequest: true})
	if allowed || err == nil {
		t.Errorf("authorize without an API server: allowed %v, err %v; want an error", allowed, err)
	}
	for _, step := range []string{"authentication", "authorization"} {
		if v := value(t, reg, "infergate_gateway_auth_decisions_total", "step", step, "decision", "error"); v != 1 {
			t.Errorf("%s errors %v, want 1", step, v)
		}
	}
}

// caller authenticates token with a checker of the live API server.
func caller(t *testing.T, token string) user.Info {
	t.Helper()
	checker, _ := newChecker(t, cfg, access.Options{})
	u, ok, err := checker.Authenticate(bearer(token))
	if !ok || err != nil {
		t.Fatalf("authenticate: %v %v", ok, err)
	}
	return u
}

// value sums the samples of a counter whose labels include the given name/value pairs.
func value(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	return testutil.MetricSum(t, reg, name, want)
}

// partition is a TCP proxy to the API server that can be cut, as a network partition would:
// its connections close and new ones are refused.
type partition struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func newPartition(t *testing.T) (*partition, *rest.Config) {
	t.Helper()
	target, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &partition{ln: ln}
	t.Cleanup(p.cut)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target.Host)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	through := rest.CopyConfig(cfg)
	through.Host = "https://" + ln.Addr().String()
	return p, through
}

func (p *partition) cut() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// While the API server cannot be asked, the last answers it gave are used for their TTL plus
// the outage grace; answers it never gave are errors. (A token it has since refused is
// forgotten: see outage_test.go and the gateway's TestRevokedTokenStaysRevokedInAnOutage,
// since the API server caches its own token answers for 10 s.)
func TestOutageGraceKeepsTheLastAnswers(t *testing.T) {
	ctx := context.Background()
	token := serviceAccount(t, "outage", "app")
	unknown := serviceAccount(t, "outage", "newcomer")
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "call", Namespace: "outage"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"inference.infergate.dev"}, Resources: []string{"modelentities/proxy"}, Verbs: []string{"create"}}}}
	if _, err := clientset.RbacV1().Roles("outage").Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "call", Namespace: "outage"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "call"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "app", Namespace: "outage"}}}
	if _, err := clientset.RbacV1().RoleBindings("outage").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	const ttl, grace = 200 * time.Millisecond, 3 * time.Second
	p, through := newPartition(t)
	checker, reg := newChecker(t, through, access.Options{TokenCacheTTL: ttl, AllowCacheTTL: ttl, DenyCacheTTL: ttl, OutageGrace: grace})
	u, ok, err := checker.Authenticate(bearer(token))
	if !ok || err != nil {
		t.Fatalf("authenticate: %v %v", ok, err)
	}
	call := func(verb string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: u, Verb: verb, Namespace: "outage", APIGroup: "inference.infergate.dev",
			Resource: "modelentities", Subresource: "proxy", Name: "llama", ResourceRequest: true}
	}
	for verb, want := range map[string]bool{"create": true, "get": false} {
		if allowed, _, err := checker.Authorize(ctx, call(verb)); allowed != want || err != nil {
			t.Fatalf("%s: allowed %v, err %v", verb, allowed, err)
		}
	}
	reviewed := time.Now()

	p.cut()
	time.Sleep(2 * ttl) // the caches have expired: only the last known answers remain
	if got, ok, err := checker.Authenticate(bearer(token)); !ok || err != nil || got.GetName() != u.GetName() {
		t.Errorf("in the outage, a token the API server accepted: %v, ok %v, err %v", got, ok, err)
	}
	for verb, want := range map[string]bool{"create": true, "get": false} {
		if allowed, _, err := checker.Authorize(ctx, call(verb)); allowed != want || err != nil {
			t.Errorf("in the outage, %s: allowed %v, err %v; want its last answer, %v", verb, allowed, err, want)
		}
	}
	if _, ok, err := checker.Authenticate(bearer(unknown)); ok || err == nil {
		t.Errorf("in the outage, a token never reviewed: ok %v, err %v; want an error", ok, err)
	}
	if allowed, _, err := checker.Authorize(ctx, call("delete")); allowed || err == nil {
		t.Errorf("in the outage, a request never reviewed: allowed %v, err %v; want an error", allowed, err)
	}
	if a, z := value(t, reg, "infergate_gateway_auth_outage_answers_total", "step", "authentication"),
		value(t, reg, "infergate_gateway_auth_outage_answers_total", "step", "authorization"); a < 1 || z < 2 {
		t.Errorf("outage answers: %v authentications, %v authorizations; want at least 1 and 2", a, z)
	}

	// Past the grace, the outage is an error again.
	time.Sleep(time.Until(reviewed.Add(ttl + grace + ttl)))
	if _, ok, err := checker.Authenticate(bearer(token)); ok || err == nil {
		t.Errorf("past the grace: ok %v, err %v; want an error", ok, err)
	}
	if allowed, _, err := checker.Authorize(ctx, call("create")); allowed || err == nil {
		t.Errorf("past the grace: allowed %v, err %v; want an error", allowed, err)
	}
}

// A decision the API server answers with an error is forgotten, as a refused token is: when the
// manager may no longer review access (its own review is refused, 403), an allow it was given
// before is not used in its stead, neither then nor in a later outage.
func TestOutageGraceForgetsADecisionAnsweredWithAnError(t *testing.T) {
	ctx := context.Background()
	const ns = "review-refused"
	token := serviceAccount(t, ns, "app")
	reviewerToken := serviceAccount(t, ns, "reviewer")
	rbac := clientset.RbacV1()
	if _, err := rbac.Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "call"}, Rules: []rbacv1.PolicyRule{{
		APIGroups: []string{"inference.infergate.dev"}, Resources: []string{"modelentities/proxy"}, Verbs: []string{"create"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "call"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "call"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "app", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The reviewer has the manager's rights for the gateway, and nothing more.
	if _, err := rbac.ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ns}, Rules: []rbacv1.PolicyRule{
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := rbac.ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: ns},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "reviewer", Namespace: ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	p, through := newPartition(t)
	asReviewer := rest.AnonymousClientConfig(through)
	asReviewer.BearerToken = reviewerToken
	const ttl = 100 * time.Millisecond
	checker, _ := newChecker(t, asReviewer, access.Options{TokenCacheTTL: ttl, AllowCacheTTL: ttl, DenyCacheTTL: ttl, OutageGrace: 10 * time.Minute})
	call := authorizer.AttributesRecord{User: caller(t, token), Verb: "create", Namespace: ns, APIGroup: "inference.infergate.dev",
		Resource: "modelentities", Subresource: "proxy", Name: "llama", ResourceRequest: true}
	if allowed, _, err := checker.Authorize(ctx, call); !allowed || err != nil {
		t.Fatalf("allowed %v, err %v; want allowed", allowed, err)
	}

	if err := rbac.ClusterRoleBindings().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second) // the decision cache, and RBAC reaching the API server's authorizer
	for {
		allowed, _, err := checker.Authorize(ctx, call)
		if allowed {
			if time.Now().After(deadline) {
				t.Fatal("still allowed 20 s after the manager lost the right to review access")
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if err == nil {
			t.Fatal("denied without an error: the API server refused the review, it did not deny the request")
		}
		break
	}

	p.cut()
	if allowed, _, err := checker.Authorize(ctx, call); allowed || err == nil {
		t.Errorf("in an outage after the review was refused: allowed %v, err %v; want an error", allowed, err)
	}
}
