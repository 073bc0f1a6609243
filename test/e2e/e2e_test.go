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

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

const served = "meta/llama-3.1-8b-instruct"

func chat(model string) openai.ChatCompletionNewParams {
	return openai.ChatCompletionNewParams{Model: model, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say hello")}}
}

func TestEndToEnd(t *testing.T) {
	// As the chart and config/default run it: only labelled Secrets are read.
	c := startCluster(t, "--secret-label-selector", "inference.infergate.dev/api-key=true")
	a := newUpstream(t, "sim-a", "sk-e2e", served)

	// A Secret, a Provider and a ModelEntity, applied as a platform engineer would.
	start := time.Now()
	c.apply(`
apiVersion: v1
kind: Secret
metadata:
  name: upstream-key
  namespace: team
  labels: {inference.infergate.dev/api-key: "true"}
stringData: {api-key: sk-e2e}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim-a, namespace: team}
spec:
  url: ` + a.srv.URL + `
  apiKeySecretRef: {name: upstream-key, key: api-key}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama, namespace: team}
spec: {servedModelName: ` + served + `}
`)
	c.eventually(10*time.Second, func() error {
		if s := c.status("team", "llama"); s != 200 {
			return fmt.Errorf("status %d", s)
		}
		return nil
	})
	t.Logf("kubectl apply to the first 200: %s", time.Since(start))
	c.run("wait", "--for=condition=Ready", "-n", "team", "modelentity/llama", "provider/sim-a", "--timeout=30s")
	if out := c.run("get", "inference", "-n", "team"); !strings.Contains(out, "modelentity.inference.infergate.dev/llama") || !strings.Contains(out, "True") {
		t.Errorf("kubectl get inference:\n%s", out)
	}

	t.Run("the gateway authenticates and authorizes with the cluster", func(t *testing.T) {
		resp, err := http.Post(c.gateway+"/apis/inference-gateway/v2/workspaces/team/openai/-/v1/chat/completions",
			"application/json", strings.NewReader(`{"model":"llama","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != "Bearer" {
			t.Errorf("without a token: %s, WWW-Authenticate %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
		// team/app may call the models of team, not those of system.
		if s := c.status("system", "llama"); s != http.StatusForbidden {
			t.Errorf("in another workspace: %d, want 403", s)
		}
		if resp := c.get("/apis/inference-gateway/v2/workspaces/team/provider/sim-a/ready"); resp.StatusCode != http.StatusForbidden {
			t.Errorf("provider ready without rights on providers: %s, want 403", resp.Status)
		}
	})

	t.Run("chat and streaming chat through the gateway", func(t *testing.T) {
		resp, err := c.openai("team").Chat.Completions.New(ctxTimeout(t, 10*time.Second), chat("team/llama"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Model != "team/llama" || !strings.Contains(resp.Choices[0].Message.Content, "Hello from sim-a") {
			t.Errorf("response %+v", resp)
		}
		stream := c.openai("team").Chat.Completions.NewStreaming(ctxTimeout(t, 10*time.Second), chat("llama"))
		n := 0
		for stream.Next() {
			if stream.Current().Model != "team/llama" {
				t.Errorf("chunk model %q", stream.Current().Model)
			}
			n++
		}
		if err := stream.Err(); err != nil || n != 4 {
			t.Errorf("%d chunks, err %v", n, err)
		}
		got, _ := a.sim.LastRequest()
		if got.Header.Get("Authorization") != "Bearer sk-e2e" {
			t.Errorf("the upstream got Authorization %q, want the key from the Secret, never the caller's token", got.Header.Get("Authorization"))
		}
		list, err := c.openai("team").Models.List(ctxTimeout(t, 10*time.Second))
		if err != nil || len(list.Data) != 1 || list.Data[0].ID != "team/llama" {
			t.Errorf("models %+v, %v", list, err)
		}
	})

	t.Run("a virtual model falls back to its next target, under its own name, as kubectl shows", func(t *testing.T) {
		flaky := newUpstream(t, "sim-flaky", "", "flaky/model")
		backup := newUpstream(t, "sim-backup", "", "backup/model")
		c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim-flaky, namespace: team}
spec: {url: ` + flaky.srv.URL + `}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim-backup, namespace: team}
spec: {url: ` + backup.srv.URL + `}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: flaky, namespace: team}
spec: {servedModelName: flaky/model}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: backup, namespace: team}
spec: {servedModelName: backup/model}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: assistant, namespace: team}
spec:
  targets: [{name: flaky}, {name: backup, order: 1}]
`)
		c.run("wait", "--for=condition=Ready", "-n", "team", "modelentity/assistant", "--timeout=30s")
		c.eventually(20*time.Second, func() error {
			if out := c.run("get", "me", "assistant", "-n", "team"); !strings.Contains(out, "flaky; then backup") || strings.Contains(out, "not ready") {
				return fmt.Errorf("kubectl get me assistant:\n%s", out)
			}
			return nil
		})
		c.routableOn(20*time.Second, "team", "assistant", c.manager)
		flaky.sim.SetStatus(http.StatusServiceUnavailable)
		resp, err := c.openai("team").Chat.Completions.New(ctxTimeout(t, 10*time.Second), chat("assistant"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.Model != "team/assistant" || !strings.Contains(resp.Choices[0].Message.Content, "sim-backup") {
			t.Errorf("response %+v, want sim-backup's answer named team/assistant", resp)
		}
		// team/app may call the virtual model; the table lists it.
		list, err := c.openai("team").Models.List(ctxTimeout(t, 10*time.Second))
		if err != nil || !slices.ContainsFunc(list.Data, func(m openai.Model) bool { return m.ID == "team/assistant" }) {
			t.Errorf("models %+v, %v", list, err)
		}
		c.run("delete", "-n", "team", "modelentity/assistant", "modelentity/flaky", "modelentity/backup", "provider/sim-flaky", "provider/sim-backup")
	})

	t.Run("key rotation reaches the gateway without a restart", func(t *testing.T) {
		a.sim.SetAPIKey("sk-rotated")
		c.apply(`
apiVersion: v1
kind: Secret
metadata:
  name: upstream-key
  namespace: team
  labels: {inference.infergate.dev/api-key: "true"}
stringData: {api-key: sk-rotated}
`)
		c.eventually(10*time.Second, func() error {
			if s := c.status("team", "llama"); s != 200 {
				return fmt.Errorf("status %d", s)
			}
			return nil
		})
		if got, _ := a.sim.LastRequest(); got.Header.Get("Authorization") != "Bearer sk-rotated" {
			t.Errorf("upstream saw %q", got.Header.Get("Authorization"))
		}
	})

	t.Run("a key in a Secret without the label is not read until it is labelled", func(t *testing.T) {
		c.apply(`
apiVersion: v1
kind: Secret
metadata: {name: unlabelled-key, namespace: team}
stringData: {api-key: sk-rotated}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim-unlabelled, namespace: team}
spec:
  url: ` + a.srv.URL + `
  apiKeySecretRef: {name: unlabelled-key, key: api-key}
`)
		c.eventually(20*time.Second, func() error {
			var p inferencev1alpha1.Provider
			if err := c.k8s.Get(context.Background(), client.ObjectKey{Namespace: "team", Name: "sim-unlabelled"}, &p); err != nil {
				return err
			}
			cond := meta.FindStatusCondition(p.Status.Conditions, inferencev1alpha1.ConditionReady)
			if cond == nil || cond.Reason != string(inferencev1alpha1.ReasonSecretNotFound) {
				return fmt.Errorf("condition %+v", cond)
			}
			if want := "kubectl label secret unlabelled-key -n team inference.infergate.dev/api-key=true"; !strings.Contains(cond.Message, want) {
				t.Errorf("message %q does not say %q", cond.Message, want)
			}
			return nil
		})
		c.run("label", "secret", "unlabelled-key", "-n", "team", "inference.infergate.dev/api-key=true")
		c.run("wait", "--for=condition=Ready", "-n", "team", "provider/sim-unlabelled", "--timeout=30s")
		c.run("delete", "-n", "team", "provider/sim-unlabelled")
	})

	t.Run("two providers, one upstream killed, requests keep succeeding", func(t *testing.T) {
		b := newUpstream(t, "sim-b", "sk-rotated", served)
		c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim-b, namespace: team}
spec:
  url: ` + b.srv.URL + `
  probeInterval: 2s
  apiKeySecretRef: {name: upstream-key, key: api-key}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: duo, namespace: team}
spec:
  servedModelName: ` + served + `
  providers: [{name: sim-a}, {name: sim-b}]
`)
		c.eventually(20*time.Second, func() error {
			var e inferencev1alpha1.ModelEntity
			if err := c.k8s.Get(context.Background(), client.ObjectKey{Namespace: "team", Name: "duo"}, &e); err != nil {
				return err
			}
			if e.Status.ReadyProviders != 2 {
				return fmt.Errorf("ready providers %d", e.Status.ReadyProviders)
			}
			return nil
		})
		// Let the gateway's table catch up with the status the test just read.
		c.eventually(10*time.Second, func() error {
			before := b.sim.Served()
			for i := 0; i < 10; i++ {
				c.status("team", "duo")
			}
			if b.sim.Served() == before {
				return fmt.Errorf("sim-b gets no traffic yet")
			}
			return nil
		})
		b.srv.CloseClientConnections()
		b.srv.Close()
		for i := 0; i < 30; i++ {
			if _, err := c.openai("team").Chat.Completions.New(ctxTimeout(t, 10*time.Second), chat("duo")); err != nil {
				t.Fatalf("request %d after sim-b died: %v", i, err)
			}
		}
		c.run("wait", "--for=condition=Ready=False", "-n", "team", "provider/sim-b", "--timeout=60s")
	})

	t.Run("deleting the provider gives 503, deleting the entity 404", func(t *testing.T) {
		c.run("delete", "-n", "team", "provider/sim-a")
		c.eventually(10*time.Second, func() error {
			if s := c.status("team", "llama"); s != 503 {
				return fmt.Errorf("status %d, want 503", s)
			}
			return nil
		})
		c.run("delete", "-n", "team", "modelentity/llama")
		c.eventually(10*time.Second, func() error {
			if s := c.status("team", "llama"); s != 404 {
				return fmt.Errorf("status %d, want 404", s)
			}
			return nil
		})
	})

	t.Run("a Provider that leads back to the gateway is a loop, whatever it sets", func(t *testing.T) {
		// Its health path at the gateway's own /healthz: the probe carries the hop id, and
		// the gateway answers 508 before its probes.
		c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: back-to-gateway, namespace: team}
spec:
  url: ` + c.gateway + `
  healthPath: /healthz
  servedModels: [` + served + `]
`)
		c.eventually(30*time.Second, func() error {
			if reason := c.run("get", "-n", "team", "provider/back-to-gateway", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].reason}`); reason != "Loop" {
				return fmt.Errorf("Ready reason %q, want Loop", reason)
			}
			return nil
		})
		// Nor can it replace the hop header: the API server refuses the name.
		f, err := os.CreateTemp(t.TempDir(), "*.yaml")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = f.WriteString(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: back-to-gateway, namespace: team}
spec:
  url: ` + c.gateway + `
  healthPath: /healthz
  servedModels: [` + served + `]
  requiredExtraHeaders: [{name: X-Infergate-Hop, value: forged}]
`)
		f.Close()
		out, err := exec.Command(c.kubectl, "--kubeconfig", c.kubeconfig, "apply", "-f", f.Name()).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "X-Infergate-* headers (among them the hop header that detects loops)") {
			t.Errorf("kubectl apply of a Provider that sets the hop header: %v\n%s", err, out)
		}
		c.run("delete", "-n", "team", "provider/back-to-gateway")
	})

	t.Run("a Deployment becomes a Provider and a ModelEntity", func(t *testing.T) {
		c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Deployment
metadata: {name: llama-nim, namespace: team}
spec:
  servedModelName: meta/llama-3.2-1b-instruct
  engine: nim
  image: nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5
  gpus: 1
`)
		var w appsv1.Deployment
		c.eventually(20*time.Second, func() error {
			return c.k8s.Get(context.Background(), client.ObjectKey{Namespace: "team", Name: "llama-nim"}, &w)
		})
		c.run("wait", "--for=jsonpath={.status.phase}=Created", "-n", "team", "deployments.inference.infergate.dev/llama-nim", "--timeout=30s")
		// No kubelet runs pods in envtest: report the workload available as the cluster's
		// deployment controller would once the NIM passed its readiness probe.
		w.Status = appsv1.DeploymentStatus{ObservedGeneration: w.Generation, Replicas: 1, ReadyReplicas: 1, AvailableReplicas: 1, UpdatedReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue, Reason: "MinimumReplicasAvailable", LastTransitionTime: metav1.Now()}}}
		if err := c.k8s.Status().Update(context.Background(), &w); err != nil {
			t.Fatal(err)
		}
		c.run("wait", "--for=condition=Ready", "-n", "team", "mdep/llama-nim", "--timeout=30s")

		var d inferencev1alpha1.Deployment
		if err := c.k8s.Get(context.Background(), client.ObjectKey{Namespace: "team", Name: "llama-nim"}, &d); err != nil {
			t.Fatal(err)
		}
		var phases []string
		for _, h := range d.Status.History {
			phases = append(phases, string(h.Phase))
		}
		if d.Status.Phase != inferencev1alpha1.PhaseReady || phases[0] != "Created" || phases[len(phases)-1] != "Ready" ||
			d.Status.URL != "http://llama-nim.team.svc:8000" {
			t.Errorf("status %+v", d.Status)
		}
		var p inferencev1alpha1.Provider
		c.eventually(20*time.Second, func() error {
			if err := c.k8s.Get(context.Background(), client.ObjectKey{Namespace: "team", Name: "llama-nim"}, &p); err != nil {
				return err
			}
			if p.Status.URL == "" {
				return fmt.Errorf("provider has no URL yet")
			}
			return nil
		})
		if !metav1.IsControlledBy(&p, &d) || p.Status.URL != "http://llama-nim.team.svc:8000" || !slices.Equal(p.Spec.ServedModels, []string{"meta/llama-3.2-1b-instruct"}) {
			t.Errorf("provider %+v", p)
		}
		out := c.run("get", "modelentity", "-n", "team", "meta-llama-3-2-1b-instruct", "-o", "jsonpath={.spec.servedModelName}")
		if out != "meta/llama-3.2-1b-instruct" {
			t.Errorf("entity served model %q", out)
		}
		c.run("delete", "-n", "team", "deployments.inference.infergate.dev/llama-nim", "--wait=true", "--timeout=30s")
		if out := c.run("get", "providers,modelentities", "-n", "team", "-o", "name"); strings.Contains(out, "llama-nim") || strings.Contains(out, "meta-llama-3-2") {
			t.Errorf("left behind after deleting the Deployment:\n%s", out)
		}
	})

	t.Run("the gateway keeps serving when the API server goes away", func(t *testing.T) {
		k := newUpstream(t, "sim-keep", "", served)
		c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim-keep, namespace: system}
spec: {url: ` + k.srv.URL + `}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: keep, namespace: team}
spec: {servedModelName: ` + served + `}
`)
		c.eventually(20*time.Second, func() error {
			if s := c.status("team", "keep"); s != 200 {
				return fmt.Errorf("status %d", s)
			}
			return nil
		})
		c.killAPIServer()
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			if s := c.status("team", "keep"); s != 200 {
				t.Fatalf("status %d without the API server", s)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if resp := c.get("/apis/inference-gateway/v2/workspaces/team/openai/-/v1/models"); resp.StatusCode != 200 {
			t.Fatalf("models without the API server: %s", resp.Status)
		}
	})
}
