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

package v1alpha1_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/infergate/infergate/internal/testenv"
)

// What a platform engineer sees: the samples apply with kubectl, `kubectl get inference` lists
// all three kinds with their columns, and the Deployment is reachable without the apps/v1 clash.
func TestKubectlApplyAndGetInference(t *testing.T) {
	ns := namespace(t, "kubectl")
	kubectl, err := testenv.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := testenv.WriteKubeconfig(env, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(kubectl, append([]string{"--kubeconfig", kubeconfig, "-n", ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	run("apply", "-k", filepath.Join(root, "config", "samples"))

	out := run("get", "inference")
	for _, want := range []string{
		"modelentity.inference.infergate.dev/llama-3-1-8b-instruct", "meta/llama-3.1-8b-instruct",
		"provider.inference.infergate.dev/nvidia-build",
		"deployment.inference.infergate.dev/llama-3-2-1b-nim", "nim",
		"SERVED MODEL", "READY PROVIDERS", "TARGETS", "URL", "PHASE", "READY", "AGE",
		"modelentity.inference.infergate.dev/chat",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get inference does not show %q:\n%s", want, out)
		}
	}

	for _, args := range [][]string{
		{"get", "deployments.inference.infergate.dev", "llama-3-2-1b-nim"},
		{"get", "mdep", "llama-3-2-1b-nim"},
		{"get", "me", "llama-3-1-8b-instruct"},
		{"get", "prov", "nvidia-build"},
	} {
		if out := run(args...); !strings.Contains(out, args[2]) {
			t.Errorf("kubectl %s: %s", strings.Join(args, " "), out)
		}
	}

	// The field documentation reaches kubectl explain.
	if out := run("explain", "providers.spec.apiKeySecretRef"); !strings.Contains(out, "never logged") {
		t.Errorf("kubectl explain lacks the field documentation:\n%s", out)
	}

	// An invalid manifest is refused at apply time with a message that says what to fix.
	cmd := exec.Command(kubectl, "--kubeconfig", kubeconfig, "-n", ns, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(entity("llama-3.3-70b", "meta/llama-3.3-70b-instruct"))
	out2, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out2), "meta-llama-3-3-70b-instruct") {
		t.Errorf("kubectl apply of a bad name: err=%v\n%s", err, out2)
	}
	t.Logf("kubectl apply of a bad name says:\n%s", out2)
}
