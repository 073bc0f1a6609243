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

package deploy

import (
	"strings"
	"testing"
)

// TestManifestsAreAccepted dry-runs every object that the chart and config/default produce
// against a real API server, which checks them against the built-in schemas, the infergate,
// Gateway API, ServiceMonitor and PrometheusRule CRDs and their CEL rules.
func TestManifestsAreAccepted(t *testing.T) {
	c := apiServer(t)
	tests := []struct {
		name     string
		manifest func(t *testing.T) []byte
	}{
		{"chart defaults", func(t *testing.T) []byte { return helmTemplate(t) }},
		{"chart all options", func(t *testing.T) []byte { return helmTemplate(t, "--values", allOptionsValues) }},
		{"chart all options, 53-character release name", func(t *testing.T) []byte {
			return helmTemplateRelease(t, longReleaseName, "--values", allOptionsValues, "--set", "fullnameOverride=")
		}},
		{"chart with an existing budget store", func(t *testing.T) []byte {
			return helmTemplate(t, "--set", "budgets.store.url=rediss://valkey.cache.svc:6380/0", "--set", "budgets.store.passwordSecret.name=valkey-auth",
				"--set", "budgets.store.caSecret.name=valkey-ca")
		}},
		{"chart with its Redis in memory", func(t *testing.T) []byte {
			return helmTemplate(t, "--set", "budgets.redis.enabled=true", "--set", "budgets.redis.persistence.enabled=false")
		}},
		{"kustomize config/default", func(t *testing.T) []byte { return kustomize(t, kustomizeDefault) }},
		{"kustomize config/prometheus", func(t *testing.T) []byte { return kustomize(t, "config/prometheus") }},
		{"kustomize config/grafana", func(t *testing.T) []byte { return kustomize(t, "config/grafana") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.dryRunApply(t, tt.manifest(t))
		})
	}
}

// authWarning is what NOTES.txt says first when the gateway authenticates no one
// (gateway.auth.mode=none).
const authWarning = "WARNING: the gateway does not authenticate clients (gateway.auth.mode=none): anyone who reaches " +
	"it spends your Providers' API keys through the openai, model and provider routes."

// TestChartInstallDryRun runs `helm install --dry-run=server` against the API server: helm checks
// the chart's kubeVersion against the server's version and the objects against the server's
// OpenAPI schemas, and renders NOTES.txt. The system workspace exists already, as it does when
// someone created it to hold the API key Secret before installing: the chart must leave it
// alone, since helm cannot adopt a namespace it did not create.
//
// NOTES.txt is compared with whitespace runs as single spaces; its steps must come in order
// (the Secret, then a ModelEntity, then a token, then the calls), and it opens with a warning
// whenever the gateway authenticates no one, which it does by default.
func TestChartInstallDryRun(t *testing.T) {
	c := apiServer(t)
	tests := []struct {
		name      string
		args      []string
		workspace string
		provider  string
		notes     []string // in this order
		warns     bool     // that the gateway does not authenticate clients
	}{{
		name:      "defaults",
		workspace: "system",
		provider:  "nvidia-build",
		notes: []string{
			"infergate is installed in namespace infergate-system, image ghcr.io/infergate/infergate:0.1.0.",
			"Every gateway request needs a bearer token that the cluster accepts (an OpenAI SDK's api_key), and RBAC in the request's workspace (namespace): bind infergate-model-user to call models",
			"kubectl create secret generic ngc-api-key -n system --from-literal=api-key=nvapi-...",
			"kubectl label secret ngc-api-key -n system inference.infergate.dev/api-key=true",
			"kubectl -n system wait --for=condition=Ready provider/nvidia-build",
			"kubectl apply -f - <<EOF apiVersion: inference.infergate.dev/v1alpha1 kind: ModelEntity metadata: name: llama-3-1-8b-instruct namespace: default spec: servedModelName: meta/llama-3.1-8b-instruct EOF",
			"kubectl -n default create serviceaccount my-app",
			"kubectl -n default create rolebinding my-app-calls-models --clusterrole=infergate-model-user --serviceaccount=default:my-app",
			"export TOKEN=$(kubectl -n default create token my-app)",
			"kubectl -n infergate-system port-forward service/infergate-gateway 8000:80",
			`curl http://localhost:8000/apis/inference-gateway/v2/workspaces/default/openai/-/v1/models -H "Authorization: Bearer $TOKEN"`,
			"curl http://localhost:8000/apis/inference-gateway/v2/workspaces/default/openai/-/v1/chat/completions",
			`-H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \ -d '{"model":"default/llama-3-1-8b-instruct","messages":[{"role":"user","content":"Hello!"}]}'`,
			"http://localhost:8000/apis/inference-gateway/v2/workspaces/<ws>/openai/-/v1",
			"http://infergate-gateway.infergate-system.svc/apis/inference-gateway/v2/workspaces/<ws>/openai/-/v1",
		},
	}, {
		name:      "all options",
		args:      []string{"--values", allOptionsValues},
		workspace: "shared-models",
		provider:  "build",
		notes: []string{
			"infergate is installed in namespace infergate-system, image ghcr.io/infergate/infergate@sha256:0123456789abcdef",
			"bind ig-model-user to call models, ig-model-viewer for GET requests only, ig-provider-user for the provider route.",
			"It is exposed by the HTTPRoute ig and the LoadBalancer Service ig-gateway: the same checks apply there.",
			"kubectl create secret generic nvidia-key -n shared-models --from-literal=token=nvapi-...",
			"name: llama-3-1-8b-instruct namespace: default spec: servedModelName: meta/llama-3.1-8b-instruct",
			"kubectl -n infergate-system port-forward service/ig-gateway 8000:8000",
			"curl http://localhost:8000/apis/inference-gateway/v2/workspaces/default/openai/-/v1/models",
			"http://ig-gateway.infergate-system.svc:8000/apis/inference-gateway/v2/workspaces/<ws>/openai/-/v1",
			"https://inference.example.com/apis/inference-gateway/v2/workspaces/<ws>/openai/-/v1",
		},
	}, {
		name:      "no authentication, a NodePort Service, an allow-list without Llama 3.1 8B",
		args:      []string{"--set", "gateway.auth.mode=none", "--set", "service.type=NodePort", "--set", "systemWorkspace.nvidiaBuild.enabledModels={mistralai/Mixtral_8x22B.Instruct}"},
		workspace: "system",
		provider:  "nvidia-build",
		notes: []string{
			"It is exposed by the NodePort Service infergate-gateway: put authentication in front of it (your Gateway implementation's policy, e.g. an API-key or JWT policy), or set gateway.auth.mode=kubernetes.",
			"A NodePort Service has no such policy: keep its address on a private network.",
			"name: mixtral-8x22b-instruct namespace: default spec: servedModelName: mistralai/Mixtral_8x22B.Instruct",
			"curl http://localhost:8000/apis/inference-gateway/v2/workspaces/default/openai/-/v1/models curl",
			`-H 'Content-Type: application/json' \ -d '{"model":"default/mixtral-8x22b-instruct",`,
		},
		warns: true,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.ensureNamespaces(t, tt.workspace)
			args := append([]string{"install", releaseName, chartDir, "--namespace", releaseNamespace, "--create-namespace",
				"--dry-run=server", "--kubeconfig", c.kubeconfig}, tt.args...)
			stdout, stderr, err := helm(t, args...)
			if err != nil {
				t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr)
			}
			manifest, notes, found := strings.Cut(stdout, "NOTES:")
			if !found {
				t.Fatalf("helm install printed no NOTES:\n%s", stdout)
			}
			if _, after, ok := strings.Cut(manifest, "MANIFEST:"); ok {
				manifest = after
			}
			objs := parseManifest(t, []byte(manifest))
			if n := kinds(objs)["Namespace"]; n != 0 {
				t.Errorf("helm install renders %d Namespace(s), want none: the namespace %s exists and belongs to no release", n, tt.workspace)
			}
			if p := find(t, objs, "Provider", tt.provider); p.GetNamespace() != tt.workspace {
				t.Errorf("Provider %s is in %q, want %s", tt.provider, p.GetNamespace(), tt.workspace)
			}
			flat := strings.Join(strings.Fields(notes), " ")
			rest := flat
			for _, want := range tt.notes {
				_, after, found := strings.Cut(rest, want)
				switch {
				case found:
					rest = after
				case strings.Contains(flat, want):
					t.Errorf("NOTES.txt says %q out of order:\n%s", want, notes)
				default:
					t.Errorf("NOTES.txt does not say %q:\n%s", want, notes)
				}
			}
			switch i := strings.Index(flat, authWarning); {
			case !tt.warns && i >= 0:
				t.Errorf("NOTES.txt warns that the gateway does not authenticate clients, which it does:\n%s", notes)
			case tt.warns && (i < 0 || i > strings.Index(flat, "Check the manager")):
				t.Errorf("NOTES.txt does not open with the warning %q:\n%s", authWarning, notes)
			}
		})
	}
}
