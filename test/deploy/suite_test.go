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

// Package deploy checks the two ways to install infergate: the Helm chart charts/infergate and
// the kustomize tree config/default. It lints and renders the chart, checks that its CRDs and
// RBAC are those that controller-gen generates into config/, that wrong values fail with a
// message that names them, that every rendered object is accepted by a real API server
// (envtest, `kubectl apply --dry-run=server`), that the chart's defaults and config/default
// deploy the same objects, and that `make deploy` sets the manager's image.
//
// helm comes from $HELM, else from a cache outside the repository where the first run installs
// it with `go install` (about 2.5 minutes). The API server and kubectl come from
// KUBEBUILDER_ASSETS, as for the other envtest suites.
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/infergate/infergate/internal/testenv"
	"github.com/infergate/infergate/internal/testutil"
)

const (
	// helmVersion is the helm that the tests install when $HELM is not set.
	helmVersion = "v3.22.0"
	// promtoolVersion is the Prometheus whose promtool tests the alerts when $PROMTOOL is not
	// set: the module version of Prometheus 3.x, as in the Makefile.
	promtoolVersion = "v0.316.0"
	// kubeVersion is what `helm template` assumes: the version of the envtest API server.
	kubeVersion = "v1.37.2"
	// prometheusOperatorModule holds the Prometheus Operator's ServiceMonitor and PrometheusRule
	// CRDs. It is downloaded from the module proxy by the tests; it is not a dependency of the
	// module.
	prometheusOperatorModule = "github.com/prometheus-operator/prometheus-operator@v0.85.0"
	serviceMonitorCRD        = "example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"
	prometheusRuleCRD        = "example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml"

	chartDir          = "charts/infergate"
	allOptionsValues  = "charts/infergate/ci/all-options-values.yaml"
	releaseName       = "infergate"
	releaseNamespace  = "infergate-system"
	kustomizeDefault  = "config/default"
	generatedRBACFile = "config/rbac/role.yaml"
)

// repoRoot is the repository root; every command runs there.
var repoRoot string

func TestMain(m *testing.M) {
	root, err := testenv.RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	repoRoot = root
	code := m.Run()
	stopCluster()
	if helmHomeDir != "" {
		_ = os.RemoveAll(helmHomeDir)
	}
	os.Exit(code)
}

// cluster is the envtest API server that the package shares, started by the first test that
// needs one and stopped by TestMain.
type cluster struct {
	env        *envtest.Environment
	kubectl    string
	kubeconfig string
	dir        string
}

var (
	clusterOnce sync.Once
	shared      *cluster
	clusterErr  error
)

// apiServer returns the package's API server, with the infergate, Gateway API and
// Prometheus Operator CRDs installed, starting it on first use.
func apiServer(t *testing.T) *cluster {
	t.Helper()
	clusterOnce.Do(func() {
		start := time.Now()
		shared, clusterErr = startCluster()
		if clusterErr == nil {
			t.Logf("envtest API server started in %s", time.Since(start).Round(time.Millisecond))
		}
	})
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return shared
}

func startCluster() (*cluster, error) {
	kubectl, err := testenv.Kubectl()
	if err != nil {
		return nil, err
	}
	grants, err := testenv.GatewayAPICRDs()
	if err != nil {
		return nil, err
	}
	monitoring, err := downloadPrometheusOperatorCRDs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "infergate-deploy-test-")
	if err != nil {
		return nil, err
	}
	// The whole standard channel of Gateway API: HTTPRoute and Gateway among others.
	env, err := testenv.Start(testenv.Options{ExtraCRDPaths: append([]string{filepath.Dir(grants)}, monitoring...)})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	kubeconfig, err := testenv.WriteKubeconfig(env, dir)
	if err != nil {
		_ = env.Stop()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return &cluster{env: env, kubectl: kubectl, kubeconfig: kubeconfig, dir: dir}, nil
}

func stopCluster() {
	if shared == nil {
		return
	}
	if err := shared.env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop envtest:", err)
	}
	_ = os.RemoveAll(shared.dir)
}

// downloadPrometheusOperatorCRDs returns the paths of the ServiceMonitor and PrometheusRule
// CRDs in the module cache, downloading the Prometheus Operator module (about 4 MB) the first
// time.
func downloadPrometheusOperatorCRDs() ([]string, error) {
	cmd := exec.Command("go", "mod", "download", "-json", prometheusOperatorModule)
	// Outside the main module, so that go.mod and go.sum are left alone.
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download %s (for the ServiceMonitor and PrometheusRule CRDs): %w\n%s%s", prometheusOperatorModule, err, out, stderr.Bytes())
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("go mod download %s: %w", prometheusOperatorModule, err)
	}
	if info.Error != "" {
		return nil, fmt.Errorf("go mod download %s: %s", prometheusOperatorModule, info.Error)
	}
	var paths []string
	for _, crd := range []string{serviceMonitorCRD, prometheusRuleCRD} {
		path := filepath.Join(info.Dir, filepath.FromSlash(crd))
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("no %s in %s: %w", crd, prometheusOperatorModule, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// kubectl runs the envtest kubectl against the shared API server with stdin as input, and
// returns its combined output.
func (c *cluster) run(t *testing.T, stdin []byte, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(c.kubectl, append([]string{"--kubeconfig", c.kubeconfig}, args...)...)
	cmd.Dir = repoRoot
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must runs kubectl as run does and fails the test when kubectl fails.
func (c *cluster) must(t *testing.T, args ...string) string {
	t.Helper()
	out, err := c.run(t, nil, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// ensureNamespaces creates namespaces for real, so that namespaced objects can be dry-run.
func (c *cluster) ensureNamespaces(t *testing.T, names ...string) {
	t.Helper()
	var manifest strings.Builder
	for _, name := range names {
		fmt.Fprintf(&manifest, "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: %s\n---\n", name)
	}
	if out, err := c.run(t, []byte(manifest.String()), "apply", "--server-side", "--field-manager=deploy-test", "-f", "-"); err != nil {
		t.Fatalf("create namespaces %v: %v\n%s", names, err, out)
	}
}

// dryRunApply sends every object of a manifest to the API server with server-side apply in
// dry-run mode: schema, CEL rules and admission run, nothing is stored. The namespaces the
// objects live in are created first.
func (c *cluster) dryRunApply(t *testing.T, manifest []byte) {
	t.Helper()
	objs := parseManifest(t, manifest)
	if len(objs) == 0 {
		t.Fatal("nothing to apply: the manifest has no objects")
	}
	namespaces := []string{}
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && !slices.Contains(namespaces, ns) {
			namespaces = append(namespaces, ns)
		}
	}
	if len(namespaces) > 0 {
		c.ensureNamespaces(t, namespaces...)
	}
	out, err := c.run(t, manifest, "apply", "--server-side", "--dry-run=server", "--field-manager=deploy-test", "-f", "-")
	if err != nil {
		t.Fatalf("the API server refused the manifest (kubectl apply --server-side --dry-run=server): %v\n%s", err, out)
	}
	// One line per object: "<kind>/<name> serverside-applied (server dry run)".
	if got := strings.Count(out, "(server dry run)"); got != len(objs) {
		t.Fatalf("kubectl dry-ran %d objects, the manifest has %d:\n%s", got, len(objs), out)
	}
}

// kustomize renders a kustomization with the envtest kubectl's built-in kustomize.
func kustomize(t *testing.T, dir string) []byte {
	t.Helper()
	kubectl, err := testenv.Kubectl()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.Bytes())
	}
	return out
}

// goTool is a command-line tool the tests build from the module proxy with `go install` when
// its environment variable does not name one, as make does.
type goTool struct {
	name, env, version, pkg string
	ldflags                 []string
	took                    string // how long the first install takes, for the log

	mu   sync.Mutex
	path string
}

var (
	helmTool = &goTool{name: "helm", env: "HELM", version: helmVersion, pkg: "helm.sh/helm/v3/cmd/helm", took: "about 2.5 minutes",
		// The flags are those of helm's release build: no symbols, the version, and the
		// Kubernetes version that `helm template` and `helm lint` assume without a cluster (1.37
		// for helm 3.22; without it they assume 1.20 and refuse the chart's kubeVersion).
		ldflags: []string{
			"-s", "-w",
			"-X helm.sh/helm/v3/internal/version.version=" + helmVersion,
			"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1",
			"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37",
			"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1",
			"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37",
		}}
	promtoolTool = &goTool{name: "promtool", env: "PROMTOOL", version: promtoolVersion, pkg: "github.com/prometheus/prometheus/cmd/promtool",
		took: "about 4 minutes", ldflags: []string{"-s", "-w"}}
)

// helmBinary returns the helm the tests run.
func helmBinary(t *testing.T) string { return helmTool.binary(t) }

// binary returns $ENV (a command name, an absolute path or a path relative to the repository
// root), or the tool from the user cache, installing it there first when it is missing.
func (g *goTool) binary(t *testing.T) string {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.path != "" {
		return g.path
	}
	if p := os.Getenv(g.env); p != "" {
		// A relative path such as bin/helm is taken from the repository root, where make runs.
		if strings.ContainsRune(p, filepath.Separator) && !filepath.IsAbs(p) {
			p = filepath.Join(repoRoot, p)
		}
		resolved, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("%s=%s is not an executable: %v", g.env, os.Getenv(g.env), err)
		}
		g.path = resolved
		return resolved
	}
	cacheDir, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("no cache directory for %s (set $%s to a %s %s binary instead): %v", g.name, g.env, g.name, g.version, err)
	}
	dir := filepath.Join(cacheDir, "infergate", "tools", g.name+"-"+g.version)
	bin := filepath.Join(dir, g.name)
	if _, err := os.Stat(bin); err == nil {
		g.path = bin
		return bin
	}
	if err := g.install(t, dir); err != nil {
		t.Fatal(err)
	}
	g.path = bin
	return bin
}

// install builds the tool with `go install` into a temporary directory beside dir and renames
// it to dir, so that a concurrent run (another package, another checkout) never sees half a
// binary; the loser of a race keeps the winner's binary.
func (g *goTool) install(t *testing.T, dir string) error {
	t.Helper()
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+g.name+"-"+g.version+"-*")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	t.Logf("%s %s is not in %s: installing it with go install (%s the first time; set $%s to skip)", g.name, g.version, dir, g.took, g.env)
	start := time.Now()
	cmd := exec.Command("go", "install", "-ldflags", strings.Join(g.ldflags, " "), g.pkg+"@"+g.version)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install %s@%s: %w\n%s", g.pkg, g.version, err, out)
	}
	t.Logf("%s %s installed in %s", g.name, g.version, time.Since(start).Round(time.Second))
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, statErr := os.Stat(filepath.Join(dir, g.name)); statErr == nil {
			return nil // another run installed it meanwhile
		}
		return fmt.Errorf("move %s into %s: %w", g.name, dir, err)
	}
	return nil
}

// helm runs helm in the repository root with its own empty configuration, and returns stdout
// and stderr apart.
func helm(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	bin := helmBinary(t)
	home := helmHome(t)
	cmd := exec.Command(bin, args...)
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

var (
	helmHomeOnce sync.Once
	helmHomeDir  string
)

// helmHome is a directory for helm's cache, configuration and data, shared by the package's
// tests so that the user's repositories and plugins play no part.
func helmHome(t *testing.T) string {
	t.Helper()
	helmHomeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "infergate-helm-home-")
		if err == nil {
			helmHomeDir = dir
		}
	})
	if helmHomeDir == "" {
		t.Fatal("cannot create a temporary directory for helm's configuration")
	}
	return helmHomeDir
}

// helmTemplate renders the chart as `helm template infergate charts/infergate -n
// infergate-system` does, with extra arguments such as -f or --set, and fails the test when
// helm fails.
func helmTemplate(t *testing.T, args ...string) []byte {
	t.Helper()
	return helmTemplateRelease(t, releaseName, args...)
}

// helmTemplateRelease renders the chart as helmTemplate does, for another release name.
func helmTemplateRelease(t *testing.T, release string, args ...string) []byte {
	t.Helper()
	stdout, stderr, err := helm(t, releaseTemplateArgs(release, args...)...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(releaseTemplateArgs(release, args...), " "), err, stderr)
	}
	return []byte(stdout)
}

func templateArgs(extra ...string) []string {
	return releaseTemplateArgs(releaseName, extra...)
}

func releaseTemplateArgs(release string, extra ...string) []string {
	return append([]string{"template", release, chartDir, "--namespace", releaseNamespace, "--kube-version", kubeVersion}, extra...)
}

// parseManifest splits a multi-document YAML stream into objects, skipping empty documents;
// every object must have a kind and a name.
func parseManifest(t *testing.T, manifest []byte) []*unstructured.Unstructured {
	t.Helper()
	objs := testutil.DecodeYAML(t, manifest)
	for _, o := range objs {
		if o.GetKind() == "" || o.GetName() == "" {
			t.Fatalf("parse manifest: a document without kind or metadata.name: %v", o.Object)
		}
	}
	return objs
}

// objectKey identifies an object in messages and maps: Kind namespace/name.
type objectKey struct{ Kind, Namespace, Name string }

func (k objectKey) String() string {
	if k.Namespace == "" {
		return k.Kind + " " + k.Name
	}
	return k.Kind + " " + k.Namespace + "/" + k.Name
}

func keyOf(o *unstructured.Unstructured) objectKey {
	return objectKey{Kind: o.GetKind(), Namespace: o.GetNamespace(), Name: o.GetName()}
}

// index maps objects by key and fails on duplicates.
func index(t *testing.T, what string, objs []*unstructured.Unstructured) map[objectKey]*unstructured.Unstructured {
	t.Helper()
	m := make(map[objectKey]*unstructured.Unstructured, len(objs))
	for _, o := range objs {
		k := keyOf(o)
		if _, dup := m[k]; dup {
			t.Fatalf("%s has %s twice", what, k)
		}
		m[k] = o
	}
	return m
}

// find returns the only object of a kind and name in objs, failing the test otherwise.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var found *unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			if found != nil {
				t.Fatalf("two %s objects named %s", kind, name)
			}
			found = o
		}
	}
	if found == nil {
		var have []string
		for _, o := range objs {
			have = append(have, keyOf(o).String())
		}
		t.Fatalf("no %s named %s among: %s", kind, name, strings.Join(have, ", "))
	}
	return found
}

// kinds counts the objects of each kind.
func kinds(objs []*unstructured.Unstructured) map[string]int {
	m := map[string]int{}
	for _, o := range objs {
		m[o.GetKind()]++
	}
	return m
}
