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

package gateway_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/infergate/infergate/internal/access"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
)

// cluster is a real API server whose RBAC the tests change with kubectl.
type cluster struct {
	t          testing.TB
	env        *envtest.Environment
	kubectl    string
	kubeconfig string
}

func startCluster(t testing.TB) *cluster {
	t.Helper()
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c := &cluster{t: t, env: env}
	if c.kubectl, err = testenv.Kubectl(); err != nil {
		t.Fatal(err)
	}
	if c.kubeconfig, err = testenv.WriteKubeconfig(env, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cluster) run(stdin string, args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// serviceAccount creates a ServiceAccount and returns a token for it (TokenRequest API).
func (c *cluster) serviceAccount(ns, name string) string {
	c.t.Helper()
	c.run("", "create", "serviceaccount", "-n", ns, name)
	return strings.TrimSpace(c.run("", "create", "token", "-n", ns, name))
}

// bind binds a ClusterRole to a ServiceAccount in a namespace.
func (c *cluster) bind(ns, binding, clusterRole, sa string) {
	c.t.Helper()
	c.run("", "create", "rolebinding", binding, "-n", ns, "--clusterrole", clusterRole, "--serviceaccount", ns+":"+sa)
}

// TestAccessControl runs the gateway with --gateway-auth=kubernetes against a real API server:
// TokenReviews and SubjectAccessReviews decide, with the ClusterRoles of config/access bound
// by kubectl.
func TestAccessControl(t *testing.T) {
	c := startCluster(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c.run("", "apply", "-k", filepath.Join(root, "config", "access"))
	for _, ns := range []string{"team-a", "team-b", "system"} {
		c.run("", "create", "namespace", ns)
	}

	up := newUpstream(t, simulator.Options{Name: "sim", Models: []string{served}, APIKey: "sk-upstream", Chunks: 3})
	shared := newUpstream(t, simulator.Options{Name: "shared", Models: []string{served}})
	sim := provider("team-a", "sim", up.srv.URL)
	sim.AuthHeader, sim.AuthValue = "Authorization", "Bearer sk-upstream"
	const allowTTL = 2 * time.Second
	var logs accessLines
	authMetrics := prometheus.NewRegistry()
	checker, err := access.New(c.env.Config, access.Options{AllowCacheTTL: allowTTL, DenyCacheTTL: 500 * time.Millisecond, Registerer: authMetrics})
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{sim, provider("team-b", "sim", up.srv.URL), provider("system", "shared", shared.srv.URL)},
		Entities: []routing.EntitySpec{
			entity("team-a", "llama", backend("team-a", "sim", served)),
			entity("team-a", "mistral", backend("team-a", "sim", served)),
			entity("team-a", "everywhere", backend("system", "shared", served)),
			entity("team-b", "llama", backend("team-b", "sim", served)),
			{Workspace: "team-a", Name: "assistant", Created: time.Unix(1700000000, 0), Targets: []routing.TargetSpec{{Workspace: "team-a", Name: "mistral", Weight: 1}}},
		},
	}, gateway.Options{Access: checker, Log: logs.logger(), AccessLog: true})

	chatBody := func(model string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	}
	chat := func(ws, model, token string) (*http.Response, []byte) {
		t.Helper()
		h := map[string]string{"Content-Type": "application/json"}
		if token != "" {
			h["Authorization"] = "Bearer " + token
		}
		return do(t, "POST", g.base(ws)+"/openai/-/v1/chat/completions", chatBody(model), h)
	}
	get := func(path, token string) (*http.Response, []byte) {
		t.Helper()
		return do(t, "GET", g.url+path, "", map[string]string{"Authorization": "Bearer " + token})
	}
	models := func(ws, token string) []string {
		t.Helper()
		resp, body := get(gateway.Prefix+ws+"/openai/-/v1/models", token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("models of %s: %s %s", ws, resp.Status, body)
		}
		var list struct{ Data []struct{ ID string } }
		if err := json.Unmarshal(body, &list); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, m := range list.Data {
			ids = append(ids, m.ID)
		}
		return ids
	}
	forbidden := func(resp *http.Response, body []byte, want string) {
		t.Helper()
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("status %s, want 403: %s", resp.Status, body)
		}
		if e := decodeError(t, body); !strings.Contains(e.Detail, want) || e.Error.Type != "permission_error" {
			t.Errorf("403 detail %q (type %s), want it to contain %q", e.Detail, e.Error.Type, want)
		}
	}

	user := c.serviceAccount("team-a", "app")
	c.bind("team-a", "app-calls-models", "infergate-model-user", "app")

	t.Run("no token is 401 with WWW-Authenticate, on every route", func(t *testing.T) {
		for _, path := range []string{"/openai/-/v1/chat/completions", "/openai/-/v1/models", "/model/llama/-/v1/chat/completions",
			"/provider/sim/-/v1/models", "/provider/sim/ready", "/nothing-here"} {
			resp, body := do(t, "POST", g.base("team-a")+path, chatBody("llama"), nil)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("%s: %s, WWW-Authenticate %q: %s", path, resp.Status, resp.Header.Get("WWW-Authenticate"), body)
			}
			if e := decodeError(t, body); e.Error.Type != "authentication_error" || !strings.Contains(e.Detail, "bearer token") {
				t.Errorf("%s: 401 body %s", path, body)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Errorf("%s: a 401 carries no X-Request-Id", path)
			}
		}
		if _, last := up.sim.LastRequest(); last {
			t.Error("an unauthenticated request reached the upstream")
		}
	})

	t.Run("a token the API server refuses is 401, and never echoed", func(t *testing.T) {
		forged := user[:len(user)-6] + "AAAAAA"
		for _, token := range []string{"sk-not-a-kubernetes-token", forged} {
			resp, body := chat("team-a", "llama", token)
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Errorf("%s %s", resp.Status, body)
			}
			if strings.Contains(string(body), token) || !strings.Contains(string(body), "did not accept") {
				t.Errorf("401 body %s", body)
			}
		}
	})

	t.Run("a ServiceAccount without a binding is 403, named as the API server names it", func(t *testing.T) {
		lonely := c.serviceAccount("team-a", "lonely")
		resp, body := chat("team-a", "llama", lonely)
		forbidden(resp, body, `modelentities.inference.infergate.dev "llama" is forbidden: User "system:serviceaccount:team-a:lonely" cannot create resource "modelentities/proxy" in API group "inference.infergate.dev" in the namespace "team-a"`)
		resp, body = get(gateway.Prefix+"team-a/openai/-/v1/models", lonely)
		forbidden(resp, body, `cannot get resource "modelentities/proxy" in API group "inference.infergate.dev" in the namespace "team-a"`)
	})

	t.Run("a role in workspace A: 200 in A, 403 in B", func(t *testing.T) {
		if resp, body := chat("team-a", "llama", user); resp.StatusCode != http.StatusOK {
			t.Fatalf("team-a: %s %s", resp.Status, body)
		}
		resp, body := chat("team-b", "llama", user)
		forbidden(resp, body, `in the namespace "team-b"`)
		// The model route is authorized like the OpenAI route, the entity from the path.
		resp, body = do(t, "POST", g.base("team-a")+"/model/mistral/-/v1/chat/completions", chatBody("whatever"),
			map[string]string{"Authorization": "Bearer " + user, "Content-Type": "application/json"})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("model route: %s %s", resp.Status, body)
		}
		if got := models("team-a", user); !slices.Equal(got, []string{"team-a/assistant", "team-a/everywhere", "team-a/llama", "team-a/mistral"}) {
			t.Errorf("models %v", got)
		}
		// Unknown entities are 404 to callers who may see them, as before.
		if resp, body := chat("team-a", "nothing", user); resp.StatusCode != http.StatusNotFound {
			t.Errorf("unknown entity: %s %s", resp.Status, body)
		}
	})

	t.Run("the OpenAI Go SDK with a token as api_key, streaming included; the token never reaches the upstream", func(t *testing.T) {
		client := openai.NewClient(option.WithBaseURL(g.base("team-a")+"/openai/-/v1/"), option.WithAPIKey(user), option.WithMaxRetries(0))
		var httpResp *http.Response
		resp, err := client.Chat.Completions.New(ctxTimeout(t, 10*time.Second), chatParams("team-a/llama"), option.WithResponseInto(&httpResp))
		if err != nil || resp.Model != "team-a/llama" {
			t.Fatalf("chat: %v %+v", err, resp)
		}
		// The access log names the caller, never its token.
		if lines := logs.of(httpResp.Header.Get("X-Request-Id"), 5*time.Second); len(lines) != 1 || lines[0]["user"] != "system:serviceaccount:team-a:app" {
			t.Errorf("access lines %v, want one with the caller's user name", lines)
		}
		stream := client.Chat.Completions.NewStreaming(ctxTimeout(t, 10*time.Second), chatParams("llama"))
		n := 0
		for stream.Next() {
			n++
		}
		if err := stream.Err(); err != nil || n < 3 {
			t.Errorf("stream: %d chunks, %v", n, err)
		}
		last := up.lastRequest(t)
		if got := last.Header.Get("Authorization"); got != "Bearer sk-upstream" {
			t.Errorf("the upstream got Authorization %q, want the provider's key only", got)
		}
		for name, values := range last.Header {
			for _, v := range values {
				if strings.Contains(v, user) {
					t.Errorf("the client's token reached the upstream in %s", name)
				}
			}
		}
		list, err := client.Models.List(ctxTimeout(t, 10*time.Second))
		if err != nil || len(list.Data) != 4 {
			t.Errorf("models: %v %+v", err, list)
		}
		// A refused token is the SDK's AuthenticationError.
		bad := openai.NewClient(option.WithBaseURL(g.base("team-a")+"/openai/-/v1/"), option.WithAPIKey("sk-wrong"), option.WithMaxRetries(0))
		_, err = bad.Chat.Completions.New(ctxTimeout(t, 10*time.Second), chatParams("llama"))
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
			t.Errorf("a bad api_key: %v", err)
		}
		logs.mu.Lock()
		raw := logs.raw.String()
		logs.mu.Unlock()
		if strings.Contains(raw, user) || strings.Contains(raw, "sk-wrong") || strings.Contains(raw, "sk-upstream") {
			t.Error("a token or key is in the logs")
		}
	})

	t.Run("a read-only role may GET v1/models but not POST", func(t *testing.T) {
		reader := c.serviceAccount("team-a", "reader")
		c.bind("team-a", "reader-views-models", "infergate-model-viewer", "reader")
		if got := models("team-a", reader); len(got) != 4 {
			t.Errorf("models %v", got)
		}
		if resp, body := get(gateway.Prefix+"team-a/openai/-/v1/models/llama", reader); resp.StatusCode != http.StatusOK {
			t.Errorf("one model: %s %s", resp.Status, body)
		}
		resp, body := chat("team-a", "llama", reader)
		forbidden(resp, body, `User "system:serviceaccount:team-a:reader" cannot create resource "modelentities/proxy"`)
	})

	t.Run("raising a request's priority needs the verb prioritize; lowering it does not", func(t *testing.T) {
		urgent := c.serviceAccount("team-a", "urgent")
		c.bind("team-a", "urgent-calls-models", "infergate-model-user", "urgent")
		send := func(class string) (*http.Response, []byte) {
			t.Helper()
			return do(t, "POST", g.base("team-a")+"/openai/-/v1/chat/completions", chatBody("llama"),
				map[string]string{"Authorization": "Bearer " + urgent, "Content-Type": "application/json", gateway.PriorityHeader: class})
		}
		resp, body := send("Critical")
		forbidden(resp, body, `User "system:serviceaccount:team-a:urgent" cannot prioritize resource "modelentities/proxy"`)
		if resp, body := send("Sheddable"); resp.StatusCode != http.StatusOK {
			t.Errorf("lowering the class: %s %s", resp.Status, body)
		}
		c.bind("team-a", "urgent-prioritizes", "infergate-prioritizer", "urgent")
		eventually(t, 5*time.Second, func() error { // past the denial's cache
			if resp, body := send("Critical"); resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s %s", resp.Status, body)
			}
			return nil
		})
	})

	t.Run("a role restricted by resourceNames reaches and lists only its entity", func(t *testing.T) {
		one := c.serviceAccount("team-a", "one")
		c.run(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: llama-only, namespace: team-a}
rules:
- apiGroups: [inference.infergate.dev]
  resources: [modelentities/proxy]
  resourceNames: [llama]
  verbs: [get, create]
`, "apply", "-f", "-")
		c.run("", "create", "rolebinding", "one-llama", "-n", "team-a", "--role", "llama-only", "--serviceaccount", "team-a:one")
		if resp, body := chat("team-a", "llama", one); resp.StatusCode != http.StatusOK {
			t.Errorf("llama: %s %s", resp.Status, body)
		}
		resp, body := chat("team-a", "mistral", one)
		forbidden(resp, body, `"mistral" is forbidden`)
		if got := models("team-a", one); !slices.Equal(got, []string{"team-a/llama"}) {
			t.Errorf("models %v, want only team-a/llama", got)
		}
		resp, body = get(gateway.Prefix+"team-a/openai/-/v1/models/mistral", one)
		forbidden(resp, body, `"mistral" is forbidden`)
		// kubectl auth can-i answers the same.
		for _, tc := range []struct{ name, want string }{{"llama", "yes"}, {"mistral", "no"}} {
			out, _ := exec.Command(c.kubectl, "--kubeconfig", c.kubeconfig, "auth", "can-i", "create", "modelentities/"+tc.name,
				"--subresource", "proxy", "-n", "team-a", "--as", "system:serviceaccount:team-a:one").CombinedOutput()
			if strings.TrimSpace(string(out)) != tc.want {
				t.Errorf("kubectl auth can-i create modelentities/%s --subresource proxy: %s, want %s", tc.name, out, tc.want)
			}
		}
	})

	t.Run("a virtual model needs rights on itself alone, and they reach none of its targets", func(t *testing.T) {
		c.run(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: assistant-only, namespace: team-a}
rules:
- apiGroups: [inference.infergate.dev]
  resources: [modelentities/proxy]
  resourceNames: [assistant]
  verbs: [get, create]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: mistral-only, namespace: team-a}
rules:
- apiGroups: [inference.infergate.dev]
  resources: [modelentities/proxy]
  resourceNames: [mistral]
  verbs: [get, create]
`, "apply", "-f", "-")
		alias := c.serviceAccount("team-a", "alias")
		c.run("", "create", "rolebinding", "alias-assistant", "-n", "team-a", "--role", "assistant-only", "--serviceaccount", "team-a:alias")
		target := c.serviceAccount("team-a", "target")
		c.run("", "create", "rolebinding", "target-mistral", "-n", "team-a", "--role", "mistral-only", "--serviceaccount", "team-a:target")
		resp, body := chat("team-a", "assistant", alias)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"model":"team-a/assistant"`) {
			t.Errorf("assistant: %s %s", resp.Status, body)
		}
		resp, body = chat("team-a", "mistral", alias)
		forbidden(resp, body, `"mistral" is forbidden`)
		if got := models("team-a", alias); !slices.Equal(got, []string{"team-a/assistant"}) {
			t.Errorf("models %v, want only team-a/assistant", got)
		}
		// The right to call a target is no right to call the virtual model.
		resp, body = chat("team-a", "assistant", target)
		forbidden(resp, body, `"assistant" is forbidden`)
		if got := models("team-a", target); !slices.Equal(got, []string{"team-a/mistral"}) {
			t.Errorf("models %v, want only team-a/mistral", got)
		}
	})

	t.Run("the provider route needs providers/proxy", func(t *testing.T) {
		resp, body := get(gateway.Prefix+"team-a/provider/sim/-/v1/models", user)
		forbidden(resp, body, `cannot get resource "providers/proxy" in API group "inference.infergate.dev" in the namespace "team-a"`)
		resp, body = get(gateway.Prefix+"team-a/provider/sim/ready", user)
		forbidden(resp, body, `cannot get resource "providers" in API group`)

		ops := c.serviceAccount("team-a", "ops")
		c.bind("team-a", "ops-providers", "infergate-provider-user", "ops")
		if resp, body := get(gateway.Prefix+"team-a/provider/sim/-/v1/models", ops); resp.StatusCode != http.StatusOK {
			t.Errorf("provider route: %s %s", resp.Status, body)
		}
		if resp, body := get(gateway.Prefix+"team-a/provider/sim/ready", ops); resp.StatusCode != http.StatusOK {
			t.Errorf("provider ready: %s %s", resp.Status, body)
		}
		resp, body = chat("team-a", "llama", ops)
		forbidden(resp, body, `cannot create resource "modelentities/proxy"`)
	})

	t.Run("an entity served by the system workspace needs rights on the entity alone", func(t *testing.T) {
		before := shared.sim.Served()
		if resp, body := chat("team-a", "everywhere", user); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s", resp.Status, body)
		}
		if shared.sim.Served() != before+1 {
			t.Error("the system workspace's provider did not serve the request")
		}
	})

	t.Run("/metrics on the gateway port needs get on its path", func(t *testing.T) {
		resp, body := get("/metrics", user)
		forbidden(resp, body, `User "system:serviceaccount:team-a:app" cannot get path "/metrics"`)
		scraper := c.serviceAccount("team-a", "scraper")
		c.run(`apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: metrics-reader}
rules:
- nonResourceURLs: [/metrics]
  verbs: [get]
`, "apply", "-f", "-")
		c.run("", "create", "clusterrolebinding", "scraper-metrics", "--clusterrole", "metrics-reader", "--serviceaccount", "team-a:scraper")
		resp, body = get("/metrics", scraper)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "infergate_gateway_requests_total") {
			t.Errorf("metrics: %s", resp.Status)
		}
		if strings.Contains(string(body), user) || strings.Contains(string(body), scraper) {
			t.Error("a token is in the metrics")
		}
		if resp, _ := do(t, "GET", g.url+"/metrics", "", nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("metrics without a token: %s", resp.Status)
		}
		for _, probe := range []string{"/healthz", "/readyz"} {
			if resp, _ := do(t, "GET", g.url+probe, "", nil); resp.StatusCode != http.StatusOK {
				t.Errorf("%s without a token: %s", probe, resp.Status)
			}
		}
	})

	t.Run("a deleted RoleBinding is 403 within the allow TTL", func(t *testing.T) {
		leaving := c.serviceAccount("team-a", "leaving")
		c.bind("team-a", "leaving-calls", "infergate-model-user", "leaving")
		if resp, body := chat("team-a", "llama", leaving); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s", resp.Status, body)
		}
		c.run("", "delete", "rolebinding", "-n", "team-a", "leaving-calls")
		deleted := time.Now()
		for {
			resp, body := chat("team-a", "llama", leaving)
			if resp.StatusCode == http.StatusForbidden {
				t.Logf("403 %s after the RoleBinding was deleted (allow TTL %s)", time.Since(deleted).Round(time.Millisecond), allowTTL)
				break
			}
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s %s", resp.Status, body)
			}
			if time.Since(deleted) > allowTTL+5*time.Second { // the TTL, and RBAC reaching the API server's authorizer
				t.Fatalf("still allowed %s after the RoleBinding was deleted, allow TTL %s", time.Since(deleted), allowTTL)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("metrics count decisions and cache hits, never tokens", func(t *testing.T) {
		for _, want := range []map[string]string{
			{"step": "authentication", "decision": "allowed"},
			{"step": "authentication", "decision": "denied"},
			{"step": "authorization", "decision": "allowed"},
			{"step": "authorization", "decision": "denied"},
		} {
			if counter(t, authMetrics, "infergate_gateway_auth_decisions_total", want) == 0 {
				t.Errorf("no decisions %v", want)
			}
		}
		for _, cache := range []string{"token", "decision"} {
			if counter(t, authMetrics, "infergate_gateway_auth_cache_requests_total", map[string]string{"cache": cache, "result": "hit"}) == 0 {
				t.Errorf("no %s cache hits", cache)
			}
		}
		if counter(t, g.reg, "infergate_gateway_requests_total", map[string]string{"code": "401"}) == 0 ||
			counter(t, g.reg, "infergate_gateway_requests_total", map[string]string{"code": "403"}) == 0 {
			t.Error("401 and 403 answers are not counted")
		}
	})

	// Last: the API server goes away. Decisions in the caches keep working; the others are
	// 503, never an allow.
	t.Run("without the API server, cached allows are 200 and the rest 503", func(t *testing.T) {
		stranger := c.serviceAccount("team-a", "stranger")
		c.bind("team-a", "stranger-calls", "infergate-model-user", "stranger")
		if resp, body := chat("team-a", "llama", user); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s %s", resp.Status, body)
		}
		if err := c.env.ControlPlane.APIServer.Stop(); err != nil {
			t.Fatal(err)
		}
		if resp, body := chat("team-a", "llama", user); resp.StatusCode != http.StatusOK {
			t.Errorf("a cached decision: %s %s", resp.Status, body)
		}
		for name, call := range map[string]func() (*http.Response, []byte){
			"a token never seen":            func() (*http.Response, []byte) { return chat("team-a", "llama", stranger) },
			"a decision not in the cache":   func() (*http.Response, []byte) { return chat("team-a", "mistral", user) },
			"a list that needs new reviews": func() (*http.Response, []byte) { return get(gateway.Prefix+"team-b/openai/-/v1/models", user) },
		} {
			resp, body := call()
			if resp.StatusCode != http.StatusServiceUnavailable {
				t.Errorf("%s: %s %s, want 503", name, resp.Status, body)
				continue
			}
			if e := decodeError(t, body); e.Error.Code != "access_unavailable" {
				t.Errorf("%s: %s", name, body)
			}
		}
		if counter(t, authMetrics, "infergate_gateway_auth_decisions_total", map[string]string{"decision": "error"}) == 0 {
			t.Error("no decision errors counted")
		}
	})
}
