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

	"github.com/infergate/infergate/internal/access"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
)

// TestModelListReviews counts the SubjectAccessReviews that model lists send to a real API
// server: a caller without rights on a workspace of 2,000 entities is answered 403 after one
// (it cost one per entity), fresh tokens of the same ServiceAccount cost none more (each token
// was a caller of its own), and the list keeps its meaning: a caller restricted by
// resourceNames sees exactly its entities, one with rights on all of them sees them all.
func TestModelListReviews(t *testing.T) {
	c := startCluster(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c.run("", "apply", "-k", filepath.Join(root, "config", "access"))
	for _, ns := range []string{"big", "small"} {
		c.run("", "create", "namespace", ns)
	}
	up := newUpstream(t, simulator.Options{Name: "sim", Models: []string{served}})
	spec := routing.Spec{Providers: []routing.ProviderSpec{provider("big", "sim", up.srv.URL), provider("small", "sim", up.srv.URL)}}
	const big = 2000
	var bigIDs []string
	for i := range big {
		name := fmt.Sprintf("model-%04d", i)
		spec.Entities = append(spec.Entities, entity("big", name, backend("big", "sim", served)))
		bigIDs = append(bigIDs, "big/"+name)
	}
	for _, name := range []string{"llama", "mistral", "qwen"} {
		spec.Entities = append(spec.Entities, entity("small", name, backend("small", "sim", served)))
	}
	// TTLs longer than the test: what is cached stays cached, whatever the machine's pace.
	reg := prometheus.NewRegistry()
	checker, err := access.New(c.env.Config, access.Options{AllowCacheTTL: time.Hour, DenyCacheTTL: time.Hour, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, spec, gateway.Options{Access: checker})

	// Callers: one without rights, one restricted to some entities by resourceNames in each
	// workspace, one who may get every entity of the workspaces.
	c.run("", "create", "serviceaccount", "-n", "big", "nobody")
	c.run("", "create", "serviceaccount", "-n", "small", "some")
	c.run("", "create", "serviceaccount", "-n", "small", "viewer")
	for _, ns := range []string{"big", "small"} {
		c.run(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: some-models}
rules:
- apiGroups: [inference.infergate.dev]
  resources: [modelentities/proxy]
  resourceNames: [llama, qwen, model-0007]
  verbs: [get]
`, "apply", "-n", ns, "-f", "-")
		c.run("", "create", "rolebinding", "some-models", "-n", ns, "--role", "some-models", "--serviceaccount", "small:some")
		c.run("", "create", "rolebinding", "viewer", "-n", ns, "--clusterrole", "infergate-model-viewer", "--serviceaccount", "small:viewer")
	}
	// RBAC reaches the API server's authorizer before any review, so that no denial is cached
	// for a binding on its way.
	eventually(t, 30*time.Second, func() error {
		for _, ns := range []string{"big", "small"} {
			for _, who := range []string{"some", "viewer"} {
				out, _ := exec.Command(c.kubectl, "--kubeconfig", c.kubeconfig, "auth", "can-i", "get", "modelentities/qwen",
					"--subresource", "proxy", "-n", ns, "--as", "system:serviceaccount:small:"+who).CombinedOutput()
				if strings.TrimSpace(string(out)) != "yes" {
					return fmt.Errorf("%s may not get modelentities/qwen/proxy in %s yet: %s", who, ns, out)
				}
			}
		}
		return nil
	})
	token := func(ns, sa string) string { return strings.TrimSpace(c.run("", "create", "token", "-n", ns, sa)) }
	nobody := func() string { return token("big", "nobody") }
	some := func() string { return token("small", "some") }
	viewer := func() string { return token("small", "viewer") }

	reviews := func() float64 {
		return counter(t, reg, "infergate_gateway_auth_reviews_total", map[string]string{"kind": "SubjectAccessReview"})
	}
	// The same words for every denied list, whatever the size of the workspace: a caller
	// without rights does not learn it.
	hint := func(ws string) string {
		return fmt.Sprintf("in a workspace of at most 64 models, for those to list; read a single model with GET %s%s/openai/-/v1/models/{name}", gateway.Prefix, ws)
	}
	tests := []struct {
		name    string
		ws      string
		tokens  []string // each lists once, in turn
		want    []string // nil: 403
		reviews float64  // sent for all the lists of the case, caches warm from the cases above
	}{
		{name: "no rights, 2,000 entities: 403 after one review", ws: "big", tokens: []string{nobody()}, reviews: 1},
		{name: "no rights, 2,000 entities, fresh tokens of the same ServiceAccount: cached", ws: "big",
			tokens: []string{nobody(), nobody(), nobody()}, reviews: 0},
		{name: "some rights, 2,000 entities: 403 after one review", ws: "big", tokens: []string{some()}, reviews: 1},
		{name: "resourceNames, 3 entities: exactly its entities, one review each and one for all", ws: "small",
			tokens: []string{some()}, want: []string{"small/llama", "small/qwen"}, reviews: 1 + 3},
		{name: "resourceNames, 3 entities, fresh tokens: cached", ws: "small",
			tokens: []string{some(), some(), some()}, want: []string{"small/llama", "small/qwen"}, reviews: 0},
		{name: "no rights, 3 entities: 403 after one review each and one for all", ws: "small", tokens: []string{nobody()}, reviews: 1 + 3},
		{name: "no rights, 3 entities, fresh tokens: cached", ws: "small", tokens: []string{nobody(), nobody()}, reviews: 0},
		{name: "rights on every entity, 2,000 entities: one review", ws: "big", tokens: []string{viewer()}, want: bigIDs, reviews: 1},
		{name: "rights on every entity, 3 entities: one review", ws: "small", tokens: []string{viewer()},
			want: []string{"small/llama", "small/mistral", "small/qwen"}, reviews: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := reviews()
			for i, tok := range tt.tokens {
				client := openai.NewClient(option.WithBaseURL(g.base(tt.ws)+"/openai/-/v1/"), option.WithAPIKey(tok), option.WithMaxRetries(0))
				page, err := client.Models.List(ctxTimeout(t, 30*time.Second))
				if tt.want == nil {
					var apiErr *openai.Error
					if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden {
						t.Fatalf("token %d: %v, want 403", i, err)
					}
					if !strings.Contains(apiErr.Message, hint(tt.ws)) {
						t.Errorf("token %d: 403 %q, want it to say %q", i, apiErr.Message, hint(tt.ws))
					}
					continue
				}
				if err != nil {
					t.Fatalf("token %d: %v", i, err)
				}
				var ids []string
				for _, m := range page.Data {
					ids = append(ids, m.ID)
				}
				slices.Sort(ids)
				if !slices.Equal(ids, tt.want) {
					t.Errorf("token %d: %d models %.80v, want %d: %.80v", i, len(ids), ids, len(tt.want), tt.want)
				}
			}
			if got := reviews() - before; got != tt.reviews {
				t.Errorf("%v SubjectAccessReviews, want %v", got, tt.reviews)
			}
		})
	}

	// Beyond the bound, a caller with some rights still reads its models one at a time.
	t.Run("some rights, 2,000 entities: GET v1/models/{name}", func(t *testing.T) {
		client := openai.NewClient(option.WithBaseURL(g.base("big")+"/openai/-/v1/"), option.WithAPIKey(some()), option.WithMaxRetries(0))
		if m, err := client.Models.Get(ctxTimeout(t, 30*time.Second), "model-0007"); err != nil || m.ID != "big/model-0007" {
			t.Errorf("model-0007: %v %+v", err, m)
		}
		_, err := client.Models.Get(ctxTimeout(t, 30*time.Second), "model-0008")
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusForbidden {
			t.Errorf("model-0008: %v, want 403", err)
		}
	})
}
