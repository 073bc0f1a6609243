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
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/naming"
	"github.com/infergate/infergate/internal/testenv"
	"github.com/infergate/infergate/internal/testutil"
)

func TestSamplesAreAccepted(t *testing.T) {
	ns := namespace(t, "samples")
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(root, "config", "samples", "inference_*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no samples found: %v", err)
	}
	kinds := map[string]int{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range testutil.DecodeYAML(t, data) {
			obj.SetNamespace(ns)
			if err := k8s.Create(context.Background(), obj); err != nil {
				t.Errorf("%s: %s %s refused: %v", filepath.Base(file), obj.GetKind(), obj.GetName(), err)
				continue
			}
			kinds[obj.GetKind()]++
		}
	}
	for _, kind := range []string{"ModelEntity", "Provider", "Deployment", "InferenceBudget"} {
		if kinds[kind] == 0 {
			t.Errorf("config/samples has no %s", kind)
		}
	}

	// Defaults from the schema are filled in by the API server.
	var p inferencev1alpha1.Provider
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "nvidia-build"}, &p); err != nil {
		t.Fatal(err)
	}
	if p.Spec.ProbeInterval == nil || p.Spec.ProbeInterval.Duration.String() != "30s" {
		t.Errorf("spec.probeInterval default = %v, want 30s", p.Spec.ProbeInterval)
	}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "qwen-inhouse"}, &p); err != nil {
		t.Fatal(err)
	}
	if m := p.Spec.Metrics; m == nil || m.Path != "/metrics" || m.Interval == nil || m.Interval.Duration.String() != "200ms" {
		t.Errorf("spec.metrics defaults = %+v, want /metrics every 200ms", m)
	}
	var e inferencev1alpha1.ModelEntity
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "qwen-2-5-7b-instruct"}, &e); err != nil {
		t.Fatal(err)
	}
	if e.Spec.LoadBalancing != inferencev1alpha1.LoadBalancingRoundRobin {
		t.Errorf("spec.loadBalancing = %q", e.Spec.LoadBalancing)
	}
	if e.Spec.Priority != inferencev1alpha1.PriorityCritical || e.Spec.Queue == nil || e.Spec.Queue.MaxTime.Duration != 10*time.Second || *e.Spec.Queue.MaxLength != 256 {
		t.Errorf("spec.priority %q, spec.queue %+v", e.Spec.Priority, e.Spec.Queue)
	}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "llama-3-1-8b-instruct"}, &e); err != nil {
		t.Fatal(err)
	}
	if e.Spec.LoadBalancing != inferencev1alpha1.LoadBalancingCacheAware {
		t.Errorf("spec.loadBalancing default = %q, want CacheAware", e.Spec.LoadBalancing)
	}
	if e.Spec.Priority != inferencev1alpha1.PriorityStandard {
		t.Errorf("spec.priority default = %q, want Standard", e.Spec.Priority)
	}
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "chat"}, &e); err != nil {
		t.Fatal(err)
	}
	if len(e.Spec.Targets) != 3 || *e.Spec.Targets[0].Weight != 9 || *e.Spec.Targets[2].Weight != 1 || e.Spec.Targets[2].Order != 1 ||
		e.Spec.TargetAffinity != inferencev1alpha1.TargetAffinityConversation {
		t.Errorf("spec.targets %+v, spec.targetAffinity %q", e.Spec.Targets, e.Spec.TargetAffinity)
	}
	var d inferencev1alpha1.Deployment
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "llama-3-2-1b-nim"}, &d); err != nil {
		t.Fatal(err)
	}
	if d.Spec.Port != 8000 || d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("deployment defaults: port %d replicas %v, want 8000 and 1", d.Spec.Port, d.Spec.Replicas)
	}
}

const longName = "a123456789012345678901234567890123456789012345678901234567890123" // 64 characters

// Each row is a manifest a user might write and the message the API server must answer with.
var invalidObjects = []struct {
	name string
	yaml string
	want []string
}{
	// ModelEntity names: Kubernetes alone would accept all of these.
	{"entity name of one character", entity("a", "m"), []string{"metadata.name must be 2 to 63 characters long"}},
	{"entity name of 64 characters", entity(longName, "m"), []string{"metadata.name must be 2 to 63 characters long"}},
	{"entity name with dots", entity("llama-3.3-70b", "m"), []string{"must start with a lowercase letter and contain only lowercase letters, digits and hyphens", "meta-llama-3-3-70b-instruct"}},
	{"entity name with consecutive hyphens", entity("x--y", "m"), []string{"metadata.name must not contain consecutive hyphens"}},
	{"entity name starting with a digit", entity("1model", "m"), []string{"metadata.name must start with a lowercase letter"}},
	{"entity without served model", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec: {}`, []string{"spec.servedModelName is required unless spec.targets names the model entities that serve this one"}},
	{"virtual model targeting itself without providers", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: chat}
spec:
  targets: [{name: llama}, {name: chat, order: 1}]`, []string{"spec.targets names this model entity itself", "a cycle"}},
	{"virtual model naming a target twice", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: chat}
spec:
  targets: [{name: llama}, {name: nvidia-build, namespace: system}, {name: llama, weight: 3}]`, []string{"spec.targets must not name the same model entity twice"}},
	{"virtual model with a bad target", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: chat}
spec:
  targetAffinity: Sometimes
  targets: [{name: llama, weight: 0, order: 16}]`, []string{"spec.targets[0].weight", "spec.targets[0].order", "spec.targetAffinity", `supported values: "None", "Caller", "Conversation"`}},
	{"virtual model with no time to first token", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: chat}
spec:
  targets: [{name: llama, timeToFirstToken: 50ms}, {name: nvidia-build, namespace: system, timeToFirstToken: 1h}]`, []string{"spec.targets[0].timeToFirstToken", "timeToFirstToken must be at least 100ms and at most 10m", "spec.targets[1].timeToFirstToken"}},
	{"providers without a served model", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: chat}
spec:
  providers: [{name: nim}]
  targets: [{name: llama}]`, []string{"spec.providers needs spec.servedModelName"}},
	{"entity naming one provider twice", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  providers: [{name: nim-a}, {name: nim-b}, {name: nim-a}]`, []string{"spec.providers must not name the same provider twice"}},
	{"entity provider weight of zero", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  providers: [{name: nim-a, weight: 0}]`, []string{"spec.providers[0].weight", "greater than or equal to 1"}},
	{"entity retrying on an unknown failure", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  retryOn: [GatewayError, Always]`, []string{"spec.retryOn[1]", `supported values: "GatewayError", "Timeout", "Reset"`}},
	{"entity path with a leading slash", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  paths: [v1/chat/completions, /v1/files]`, []string{"spec.paths are paths after /-/ such as v1/chat/completions: no leading or trailing slash"}},
	{"entity path with dot segments", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  paths: [v1/../files]`, []string{"spec.paths are paths after /-/"}},
	{"entity path with escapes", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  paths: ["v1%2ffiles"]`, []string{"spec.paths are paths after /-/"}},
	{"entity with an empty list of paths", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  paths: []`, []string{"spec.paths", "at least 1 items"}},
	{"entity of an unknown priority", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  priority: Urgent`, []string{"spec.priority", `supported values: "Critical", "Standard", "Sheddable"`}},
	{"entity waiting an hour for capacity", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  queue: {maxTime: 1h}`, []string{"spec.queue.maxTime", "maxTime must be at most 10m"}},
	{"entity queue time in words", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec:
  servedModelName: meta/llama
  queue: {maxTime: 5 seconds}`, []string{"spec.queue.maxTime", "should match"}},
	{"provider queue of negative length", provider(`
  url: https://integrate.api.nvidia.com
  queue: {maxLength: -1}`), []string{"spec.queue.maxLength", "greater than or equal to 0"}},

	// Providers.
	{"provider with url and service", provider(`
  url: https://api.example.com
  service: {name: nim, port: 8000}`), []string{"set exactly one of spec.url (an external endpoint) or spec.service"}},
	{"provider with neither url nor service", provider(`
  servedModels: [m]`), []string{"set exactly one of spec.url"}},
	{"provider url with another scheme", provider(`
  url: ftp://api.example.com`), []string{"spec.url must be an absolute http:// or https:// URL"}},
	{"provider url that is not a URL", provider(`
  url: api.example.com/v1`), []string{"spec.url must be an absolute http:// or https:// URL"}},
	{"provider url with a query", provider(`
  url: https://api.example.com/v1?key=abc`), []string{"spec.url must not carry a query string or fragment"}},
	{"provider url with credentials", provider(`
  url: https://user:sk-secret@api.example.com/v1`), []string{"spec.url must not carry credentials: put the API key in a Secret"}},
	{"provider key reference without key", provider(`
  url: https://api.example.com
  apiKeySecretRef: {name: api-key}`), []string{"spec.apiKeySecretRef.key: Required value"}},
	{"provider key reference without name", provider(`
  url: https://api.example.com
  apiKeySecretRef: {key: api-key}`), []string{"spec.apiKeySecretRef.name: Required value"}},
	{"provider Authorization as extra header", provider(`
  url: https://api.example.com
  defaultExtraHeaders: [{name: Authorization, value: Bearer abc}]`), []string{"Authorization and Cookie cannot be extra headers: put the API key in a Secret"}},
	{"provider cookie as required header", provider(`
  url: https://api.example.com
  requiredExtraHeaders: [{name: cookie, value: session=1}]`), []string{"Authorization and Cookie cannot be extra headers"}},
	{"provider Host as extra header", provider(`
  url: https://api.example.com
  requiredExtraHeaders: [{name: Host, value: other}]`), []string{"Host, Content-Length and hop-by-hop headers are set by the gateway"}},
	{"provider hop header as required header", provider(`
  url: https://api.example.com
  requiredExtraHeaders: [{name: X-Infergate-Hop, value: forged}]`), []string{"spec.requiredExtraHeaders[0].name", "X-Infergate-* headers (among them the hop header that detects loops)", "choose another header name"}},
	{"provider header of the gateway's prefix in lower case", provider(`
  url: https://api.example.com
  defaultExtraHeaders: [{name: x-infergate-anything, value: a}]`), []string{"spec.defaultExtraHeaders[0].name", "X-Infergate-* headers"}},
	{"provider request id as extra header", provider(`
  url: https://api.example.com
  defaultExtraHeaders: [{name: X-Team, value: a}, {name: X-Request-ID, value: fixed}]`), []string{"spec.defaultExtraHeaders[1].name", "X-Request-Id"}},
	{"provider trace context as extra header", provider(`
  url: https://api.example.com
  requiredExtraHeaders: [{name: traceparent, value: 00-x}]`), []string{"traceparent, tracestate"}},
	{"provider Accept-Encoding as extra header", provider(`
  url: https://api.example.com
  requiredExtraHeaders: [{name: Accept-Encoding, value: gzip}]`), []string{"Accept-Encoding are set by the gateway itself"}},
	{"provider key in the hop header", provider(`
  url: https://api.example.com
  apiKeySecretRef: {name: k, key: k}
  authHeader: {name: X-Infergate-Hop}`), []string{"spec.authHeader.name", "X-Infergate-* headers"}},
	{"provider key in the Host header", provider(`
  url: https://api.example.com
  apiKeySecretRef: {name: k, key: k}
  authHeader: {name: host}`), []string{"spec.authHeader.name", "Host, Content-Length and hop-by-hop headers are set by the gateway and cannot carry the key"}},
	{"provider header name with a space", provider(`
  url: https://api.example.com
  defaultExtraHeaders: [{name: X Team, value: a}]`), []string{"spec.defaultExtraHeaders[0].name", "should match"}},
	{"provider header value with a newline", provider(`
  url: https://api.example.com
  defaultExtraHeaders: [{name: X-Team, value: "a\r\nX-Evil: 1"}]`), []string{"spec.defaultExtraHeaders[0].value", "should match"}},
	{"provider header names differing only in case", provider(`
  url: https://api.example.com
  defaultExtraHeaders: [{name: X-Team, value: a}, {name: x-team, value: b}]`), []string{"header names must be unique, ignoring case"}},
	{"provider extra body that is not a list of fields", provider(`
  url: https://api.example.com
  defaultExtraBody: {max_tokens: 5}`), []string{"spec.defaultExtraBody", "must be of type array"}},
	{"provider extra body field without value", provider(`
  url: https://api.example.com
  defaultExtraBody: [{name: max_tokens}]`), []string{"spec.defaultExtraBody[0].value: Required value"}},
	{"provider extra body that sets model", provider(`
  url: https://api.example.com
  requiredExtraBody: [{name: model, value: other}]`), []string{"the model field is set by the gateway"}},
	{"provider extra body that sets Model", provider(`
  url: https://api.example.com
  defaultExtraBody: [{name: Model, value: other}]`), []string{"cannot be an extra body field, in any letter case"}},
	{"provider service port zero", provider(`
  service: {name: nim, port: 0}`), []string{"spec.service.port", "greater than or equal to 1"}},
	{"provider probe interval too short", provider(`
  url: https://api.example.com
  probeInterval: 500ms`), []string{"spec.probeInterval must be at least 1s"}},
	{"provider timeout in words", provider(`
  url: https://api.example.com
  timeouts: {connect: five seconds}`), []string{"spec.timeouts.connect", "should match"}},
	{"provider health path without slash", provider(`
  url: https://api.example.com
  healthPath: health`), []string{"spec.healthPath must start with /"}},
	{"provider with allow-list and static models", provider(`
  url: https://api.example.com
  servedModels: [a]
  enabledModels: [a]`), []string{"spec.enabledModels filters discovered models"}},
	{"provider metrics path without slash", provider(`
  url: https://api.example.com
  metrics: {path: metrics}`), []string{"spec.metrics.path must start with /, such as /metrics"}},
	{"provider metrics read too often", provider(`
  url: https://api.example.com
  metrics: {interval: 10ms}`), []string{"spec.metrics.interval must be from 100ms to 1m"}},
	{"provider metrics read too rarely", provider(`
  url: https://api.example.com
  metrics: {interval: 5m}`), []string{"spec.metrics.interval must be from 100ms to 1m"}},
	{"provider metrics port zero", provider(`
  url: https://api.example.com
  metrics: {port: 0}`), []string{"spec.metrics.port", "greater than or equal to 1"}},
	{"entity with an unknown balancing", `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama}
spec: {servedModelName: meta/llama, loadBalancing: Random}`, []string{"spec.loadBalancing", "supported values", "CacheAware", "RoundRobin"}},
	{"provider name with dots", `
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: nvidia.build}
spec: {url: https://integrate.api.nvidia.com}`, []string{"metadata.name must start with a lowercase letter and contain only lowercase letters, digits and hyphens"}},

	// Deployments.
	{"deployment with negative replicas", deployment(`
  replicas: -1`), []string{"spec.replicas", "greater than or equal to 0"}},
	{"deployment with port zero", deployment(`
  port: 0`), []string{"spec.port", "greater than or equal to 1"}},
	{"deployment with port above 65535", deployment(`
  port: 70000`), []string{"spec.port", "less than or equal to 65535"}},
	{"deployment with negative GPUs", deployment(`
  gpus: -1`), []string{"spec.gpus", "greater than or equal to 0"}},
	{"deployment with unknown engine", strings.Replace(deployment(""), "engine: nim", "engine: tgi", 1), []string{"spec.engine", `supported values: "nim", "vllm", "generic"`}},
	{"deployment health path without slash", deployment(`
  healthPath: v1/health/ready`), []string{"spec.healthPath must start with /"}},
	{"generic deployment without health path", strings.Replace(deployment(""), "engine: nim", "engine: generic", 1), []string{"spec.healthPath is required when spec.engine is generic"}},
	{"deployment with tiny startup timeout", deployment(`
  startupTimeout: 5s`), []string{"spec.startupTimeout must be at least 10s"}},
	// InferenceBudgets.
	{"budget without limits", budget(`{}`), []string{"spec.limits must set at least one of requestsPerSecond"}},
	{"budget with a negative limit", budget(`{tokensPerDay: -5}`), []string{"spec.limits.tokensPerDay", "greater than or equal to 0"}},
	{"budget per nobody", budget(`{requestsPerMinute: 5}
  per: Team`), []string{"spec.per", `supported values: "Workspace", "Caller"`}},
	{"budget with unknown failure mode", budget(`{requestsPerMinute: 5}
  failureMode: Ignore`), []string{"spec.failureMode", `supported values: "Closed", "Open"`}},
	{"budget counting unknown tokens", budget(`{tokensPerMinute: 5}
  tokens: Cached`), []string{"spec.tokens", `supported values: "Total", "Input", "Output"`}},
	{"budget with a time zone that is no name", budget(`{tokensPerDay: 5}
  timeZone: "+02:00"`), []string{"spec.timeZone"}},
	{"budget with a namespace on a user", budget(`{requestsPerMinute: 5}
  subjects: [{kind: User, name: alice, namespace: team-a}]`), []string{"namespace is only for subjects of kind ServiceAccount"}},
	{"budget with an unknown subject kind", budget(`{requestsPerMinute: 5}
  subjects: [{kind: Robot, name: r2}]`), []string{"spec.subjects[0].kind", `supported values: "User", "Group", "ServiceAccount"`}},
	{"budget on entities and providers", budget(`{requestsPerMinute: 5}
  modelEntities: [chat]
  providers: [{name: nvidia-build, namespace: system}]`), []string{"spec.modelEntities and spec.providers cannot both be set"}},

	{"deployment name with consecutive hyphens", strings.Replace(deployment(""), "name: nim", "name: llama--nim", 1), []string{"metadata.name must not contain consecutive hyphens"}},
}

func entity(name, served string) string {
	return `
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: "` + name + `"}
spec: {servedModelName: "` + served + `"}`
}

func provider(spec string) string {
	return `
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: upstream}
spec:` + spec
}

func budget(limits string) string {
	return `
apiVersion: inference.infergate.dev/v1alpha1
kind: InferenceBudget
metadata: {name: budget}
spec:
  limits: ` + limits
}

func deployment(extra string) string {
	return `
apiVersion: inference.infergate.dev/v1alpha1
kind: Deployment
metadata:
  name: nim
spec:
  servedModelName: meta/llama-3.2-1b-instruct
  image: nvcr.io/nim/meta/llama-3.2-1b-instruct:1.8.5
  engine: nim` + extra
}

func TestInvalidObjectsAreRefused(t *testing.T) {
	ns := namespace(t, "invalid")
	for _, tt := range invalidObjects {
		t.Run(tt.name, func(t *testing.T) {
			objs := testutil.DecodeYAML(t, []byte(tt.yaml))
			if len(objs) != 1 {
				t.Fatalf("row has %d objects", len(objs))
			}
			obj := objs[0]
			obj.SetNamespace(ns)
			err := k8s.Create(context.Background(), obj)
			if err == nil {
				_ = k8s.Delete(context.Background(), obj)
				t.Fatalf("the API server accepted it; want a refusal saying %q", tt.want)
			}
			if !apierrors.IsInvalid(err) {
				t.Fatalf("got %v, want 422 Invalid", err)
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q\ndoes not say %q", err.Error(), want)
				}
			}
		})
	}
}

// The gateway checks names with naming.Valid; the CRD checks them with CEL. Both must agree,
// or a ModelEntity could be accepted that the gateway then answers 422 for.
func TestEntityNameRuleMatchesGateway(t *testing.T) {
	ns := namespace(t, "names")
	names := []string{
		"ab", "llama", "meta-llama-3-3-70b-instruct", "m-01-ai-yi-large", longName[:63],
		"a", longName, "1model", "x--y", "model-", "llama-3.3-70b", "a.b", "a-b-c-", "z9",
	}
	for _, name := range names {
		obj := &inferencev1alpha1.ModelEntity{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       inferencev1alpha1.ModelEntitySpec{ServedModelName: "served"},
		}
		err := k8s.Create(context.Background(), obj, client.DryRunAll)
		accepted := err == nil
		if accepted != naming.Valid(name) {
			t.Errorf("name %q: API server accepted=%v (%v), naming.Valid=%v", name, accepted, err, naming.Valid(name))
		}
	}
}
