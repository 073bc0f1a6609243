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
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/infergate/infergate/internal/testenv"
)

// fakeKubectl stands in for kubectl in `make deploy`: `kubectl kustomize` prints
// $FAKE_KUSTOMIZE, `kubectl apply -f -` writes what it reads to $FAKE_APPLIED, and the rest
// (applying and waiting for the CRDs) does nothing.
const fakeKubectl = `#!/usr/bin/env bash
set -e
case "$1" in
kustomize) cat "$FAKE_KUSTOMIZE" ;;
apply) if [[ " $* " == *" -f - "* ]]; then cat >"$FAKE_APPLIED"; fi ;;
wait) ;;
*) echo "fake kubectl: unexpected arguments: $*" >&2; exit 1 ;;
esac
`

// imageLine is the manager's image in the output of `kubectl kustomize config/default`.
var imageLine = regexp.MustCompile(`(?m)^(\s*image: )(\S+)$`)

// TestMakeDeploySetsTheImage runs `make deploy` (without its manifests prerequisite) with a fake
// kubectl, and checks that the manager's image becomes $(IMG) whatever tag or digest
// config/default gives it, that nothing else changes, and that make fails, applying nothing, when
// config/default has no ghcr.io/infergate/infergate image to replace.
func TestMakeDeploySetsTheImage(t *testing.T) {
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skipf("no make: %v", err)
	}
	rendered := string(kustomize(t, kustomizeDefault))
	if n := len(imageLine.FindAllString(rendered, -1)); n != 1 {
		t.Fatalf("%s renders %d images, want one (the manager's)", kustomizeDefault, n)
	}
	current := imageLine.FindStringSubmatch(rendered)[2]

	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kubectl"), []byte(fakeKubectl), 0o755); err != nil {
		t.Fatal(err)
	}
	const digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		image   string // of the manager in config/default
		img     string // make's IMG
		wantErr string // part of make's error output; empty when deploy should apply
	}{
		{"config/default as it is", current, "localhost:5000/infergate:dev", ""},
		{"another tag", "ghcr.io/infergate/infergate:1.2.3-rc.1", "localhost:5000/infergate:dev", ""},
		{"no tag", "ghcr.io/infergate/infergate", "localhost:5000/infergate:dev", ""},
		{"a digest", "ghcr.io/infergate/infergate@" + digest, "localhost:5000/infergate:dev", ""},
		{"a tag and a digest", "ghcr.io/infergate/infergate:0.2.0@" + digest, "registry.example.com/team/infergate@" + digest, ""},
		{"another image", "controller:latest", "localhost:5000/infergate:dev", "config/default has no image ghcr.io/infergate/infergate"},
		{"an image whose name starts alike", "ghcr.io/infergate/infergate-sidecar:1.0", "localhost:5000/infergate:dev", "config/default has no image ghcr.io/infergate/infergate"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := imageLine.ReplaceAllString(rendered, "${1}"+tt.image)
			kustomized := filepath.Join(dir, fmt.Sprintf("kustomized-%d.yaml", i))
			applied := filepath.Join(dir, fmt.Sprintf("applied-%d.yaml", i))
			if err := os.WriteFile(kustomized, []byte(input), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(makeBin, "--no-print-directory", "-o", "manifests", "deploy", "IMG="+tt.img)
			cmd.Dir = repoRoot
			cmd.Env = append(withoutMakeVars(os.Environ()),
				"PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"),
				"FAKE_KUSTOMIZE="+kustomized, "FAKE_APPLIED="+applied)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err := cmd.Run()
			got, readErr := os.ReadFile(applied)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("make deploy succeeded with the image %s in config/default:\n%s", tt.image, out.Bytes())
				}
				if !strings.Contains(out.String(), tt.wantErr) {
					t.Errorf("make deploy's output does not say %q:\n%s", tt.wantErr, out.Bytes())
				}
				if !errors.Is(readErr, os.ErrNotExist) {
					t.Errorf("make deploy failed but applied a manifest anyway")
				}
				return
			}
			if err != nil {
				t.Fatalf("make deploy IMG=%s: %v\n%s", tt.img, err, out.Bytes())
			}
			if readErr != nil {
				t.Fatalf("make deploy applied nothing: %v\n%s", readErr, out.Bytes())
			}
			want := imageLine.ReplaceAllString(rendered, "${1}"+tt.img)
			if strings.TrimRight(string(got), "\n") != strings.TrimRight(want, "\n") {
				t.Errorf("make deploy IMG=%s applied, from the image %s:\n%s\nwant:\n%s", tt.img, tt.image, got, want)
			}
		})
	}
}

// withoutMakeVars drops the variables through which a make running the tests would pass its
// flags (such as -n) to the make under test.
func withoutMakeVars(env []string) []string {
	var kept []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if name != "MAKEFLAGS" && name != "MFLAGS" && name != "MAKELEVEL" && name != "IMG" {
			kept = append(kept, kv)
		}
	}
	return kept
}

// TestMakeDeployOnABareCluster runs `make deploy` (without the manifests prerequisite) with the
// real kubectl against an API server that has nothing installed, as a platform engineer would
// against a new cluster: the CRDs first, then config/default. (`make undeploy` is not run:
// deleting a namespace waits for the namespace controller, which envtest does not run.)
func TestMakeDeployOnABareCluster(t *testing.T) {
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Skipf("no make: %v", err)
	}
	c := bareCluster(t)
	const img = "registry.example.com/infergate:test"
	deploy := exec.Command(makeBin, "--no-print-directory", "-o", "manifests", "deploy", "IMG="+img)
	deploy.Dir = repoRoot
	deploy.Env = append(withoutMakeVars(os.Environ()), "KUBECONFIG="+c.kubeconfig,
		"PATH="+filepath.Dir(c.kubectl)+string(os.PathListSeparator)+os.Getenv("PATH"))
	if out, err := deploy.CombinedOutput(); err != nil {
		t.Fatalf("make deploy: %v\n%s", err, out)
	}
	got := c.must(t, "get", "-n", releaseNamespace, "deployment/infergate", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
	if got != img {
		t.Errorf("the manager runs %q, want %q", got, img)
	}
	c.must(t, "get", "-n", releaseNamespace, "service/infergate-gateway", "service/infergate-metrics", "poddisruptionbudget/infergate",
		"serviceaccount/infergate", "role/infergate-leader-election", "rolebinding/infergate-leader-election")
	c.must(t, "get", "clusterrole/infergate-manager", "clusterrolebinding/infergate-manager")
	if out := c.must(t, "get", "-n", "system", "provider/nvidia-build", "-o", "name"); strings.TrimSpace(out) != "provider.inference.infergate.dev/nvidia-build" {
		t.Errorf("no nvidia-build Provider in the system workspace: %s", out)
	}
}

// bareCluster starts an API server of its own for one test, with nothing installed.
func bareCluster(t *testing.T) *cluster {
	t.Helper()
	kubectl, err := testenv.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	env, err := testenv.Start(testenv.Options{WithoutCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	dir := t.TempDir()
	kubeconfig, err := testenv.WriteKubeconfig(env, dir)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{env: env, kubectl: kubectl, kubeconfig: kubeconfig, dir: dir}
}

// TestHelmInstallOnABareCluster installs the chart for real into an API server that has
// nothing installed (CRDs from crds/ included), checks what a platform engineer would look at,
// and uninstalls it: the manager's objects go, the system workspace stays with its Secrets.
func TestHelmInstallOnABareCluster(t *testing.T) {
	c := bareCluster(t)
	stdout, stderr, err := helm(t, "install", releaseName, chartDir, "--namespace", releaseNamespace, "--create-namespace",
		"--kubeconfig", c.kubeconfig)
	if err != nil {
		t.Fatalf("helm install: %v\n%s%s", err, stdout, stderr)
	}
	if !strings.Contains(stdout, "STATUS: deployed") {
		t.Errorf("helm install:\n%s", stdout)
	}
	c.must(t, "get", "crd", "modelentities.inference.infergate.dev", "providers.inference.infergate.dev", "deployments.inference.infergate.dev")
	c.must(t, "get", "-n", releaseNamespace, "deployment/infergate", "service/infergate-gateway", "service/infergate-metrics",
		"poddisruptionbudget/infergate", "serviceaccount/infergate")
	if out := c.must(t, "get", "inference", "-n", "system", "-o", "name"); strings.TrimSpace(out) != "provider.inference.infergate.dev/nvidia-build" {
		t.Errorf("kubectl get inference -n system: %q", out)
	}
	c.must(t, "create", "secret", "generic", "ngc-api-key", "-n", "system", "--from-literal=api-key=nvapi-test")

	if stdout, stderr, err := helm(t, "uninstall", releaseName, "--namespace", releaseNamespace, "--kubeconfig", c.kubeconfig); err != nil {
		t.Fatalf("helm uninstall: %v\n%s%s", err, stdout, stderr)
	}
	if out := c.must(t, "get", "-n", releaseNamespace, "deployment/infergate", "--ignore-not-found", "-o", "name"); strings.TrimSpace(out) != "" {
		t.Errorf("the manager's Deployment is left after helm uninstall: %s", out)
	}
	if out := c.must(t, "get", "namespace", "system", "-o", "jsonpath={.metadata.deletionTimestamp}"); out != "" {
		t.Errorf("helm uninstall deletes the system workspace (and the Secrets in it): deletionTimestamp %s", out)
	}
	c.must(t, "get", "-n", "system", "secret/ngc-api-key")
}
