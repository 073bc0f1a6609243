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
// Gateway API and ServiceMonitor CRDs and their CEL rules.
func TestManifestsAreAccepted(t *testing.T) {
	c := apiServer(t)
	tests := []struct {
		name     string
		manifest func(t *testing.T) []byte
	}{
		{"chart defaults", func(t *testing.T) []byte { return helmTemplate(t) }},
		{"chart all options", func(t *testing.T) []byte { return helmTemplate(t, "--values", allOptionsValues) }},
		{"kustomize config/default", func(t *testing.T) []byte { return kustomize(t, kustomizeDefault) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.dryRunApply(t, tt.manifest(t))
		})
	}
}

// TestChartInstallDryRun runs `helm install --dry-run=server` against the API server: helm checks
// the chart's kubeVersion against the server's version and the objects against the server's
// OpenAPI schemas, and renders NOTES.txt. The system workspace exists already, as it does when
// someone created it to hold the API key Secret before installing: the chart must leave it
// alone, since helm cannot adopt a namespace it did not create.
func TestChartInstallDryRun(t *testing.T) {
	c := apiServer(t)
	tests := []struct {
		name      string
		args      []string
		workspace string
		provider  string
		notes     []string
	}{{
		name:      "defaults",
		workspace: "system",
		provider:  "nvidia-build",
		notes: []string{
			"kubectl -n infergate-system port-forward service/infergate-gateway 8000:80",
			"curl http://localhost:8000/apis/inference-gateway/v2/workspaces/system/openai/-/v1/models",
			"http://localhost:8000/apis/inference-gateway/v2/workspaces/<ws>/openai/-/v1",
			"http://infergate-gateway.infergate-system.svc/apis/inference-gateway/v2/workspaces/<ws>/openai/-/v1",
			"kubectl create secret generic ngc-api-key -n system --from-literal=api-key=nvapi-...",
		},
	}, {
		name:      "all options",
		args:      []string{"--values", allOptionsValues},
		workspace: "shared-models",
		provider:  "build",
		notes: []string{
			"kubectl -n infergate-system port-forward service/ig-gateway 8000:8000",
			"http://ig-gateway.infergate-system.svc:8000/apis/inference-gateway/v2/workspaces/<ws>/openai/-/v1",
			"https://inference.example.com/apis/inference-gateway/v2/workspaces/<ws>/openai/-/v1",
			"kubectl create secret generic nvidia-key -n shared-models --from-literal=token=nvapi-...",
		},
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
			for _, want := range tt.notes {
				if !strings.Contains(notes, want) {
					t.Errorf("NOTES.txt does not say %q:\n%s", want, notes)
				}
			}
		})
	}
}
