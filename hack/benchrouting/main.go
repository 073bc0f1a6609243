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

// Command benchrouting measures the control plane against a real API server (envtest): how long
// a change takes to become routable (create → first 200 through the gateway), the cost of a
// large cluster (time to build the routing table, manager RSS), and the model list of a
// workspace of 2,000 entities for callers whose RBAC grants all of them or only one.
//
//	make bench-routing
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
)

var (
	latencyObjects = flag.Int("latency-objects", 100, "entities created one at a time for the latency figure")
	namespaces     = flag.Int("namespaces", 50, "namespaces of the scale phase")
	providersPerNS = flag.Int("providers-per-namespace", 10, "providers per namespace")
	entitiesPerNS  = flag.Int("entities-per-namespace", 40, "model entities per namespace")
	listEntities   = flag.Int("list-entities", 2000, "model entities in the workspace of the model-list phase")
)

// bearer is the token every request of the benchmark carries: the manager authenticates and
// authorizes the gateway's callers (--gateway-auth=kubernetes).
var bearer string

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchrouting:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "[bench] "+format+"\n", args...) }

func run() error {
	ctx := context.Background()
	env, err := testenv.Start(testenv.Options{})
	if err != nil {
		return err
	}
	defer func() { _ = env.Stop() }()
	k8s, err := client.New(env.Config, client.Options{Scheme: testenv.Scheme})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "benchrouting")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	kubeconfig, err := testenv.WriteKubeconfig(env, dir)
	if err != nil {
		return err
	}
	root, err := testenv.RepoRoot()
	if err != nil {
		return err
	}
	bin := filepath.Join(dir, "manager")
	build := exec.Command("go", "build", "-o", bin, "./cmd")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}

	var models []string
	for i := 0; i < max(*latencyObjects, 4); i++ {
		models = append(models, "m"+strconv.Itoa(i))
	}
	sim := httptest.NewServer(simulator.New(simulator.Options{Models: models}))
	defer sim.Close()

	gw, metrics := freeAddr(), freeAddr()
	var logs bytes.Buffer
	mgr := exec.Command(bin, "--kubeconfig", kubeconfig, "--gateway-bind-address", gw, "--metrics-bind-address", metrics,
		"--health-probe-bind-address", "0", "--log-format", "console", "--allow-local-upstreams")
	mgr.Stdout, mgr.Stderr = &logs, &logs
	if err := mgr.Start(); err != nil {
		return err
	}
	defer func() {
		_ = mgr.Process.Signal(syscall.SIGTERM)
		_ = mgr.Wait()
	}()
	// A caller that may call the models of every workspace.
	if bearer, err = callerToken(ctx, env.Config, "bench-all", rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "model-user"}, "", nil); err != nil {
		return err
	}
	gateway := "http://" + gw + "/apis/inference-gateway/v2/workspaces/"
	if err := waitFor(30*time.Second, func() bool { return status(gateway+"bench/openai/-/v1/models") == 200 }); err != nil {
		return fmt.Errorf("gateway did not come up: %w\n%s", err, logs.String())
	}

	// Latency: a Provider and a ModelEntity created together, one pair at a time, each timed
	// until the first 200 through the gateway.
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "latency"}}); err != nil {
		return err
	}
	var latencies []time.Duration
	for i := 0; i < *latencyObjects; i++ {
		name := "m" + strconv.Itoa(i)
		start := time.Now()
		p := &inferencev1alpha1.Provider{ObjectMeta: metav1.ObjectMeta{Namespace: "latency", Name: "p-" + name},
			Spec: inferencev1alpha1.ProviderSpec{URL: sim.URL, ServedModels: []string{name}}}
		e := &inferencev1alpha1.ModelEntity{ObjectMeta: metav1.ObjectMeta{Namespace: "latency", Name: "e-" + name},
			Spec: inferencev1alpha1.ModelEntitySpec{ServedModelName: name, Providers: []inferencev1alpha1.ProviderReference{{Name: "p-" + name}}}}
		if err := k8s.Create(ctx, p); err != nil {
			return err
		}
		if err := k8s.Create(ctx, e); err != nil {
			return err
		}
		url := gateway + "latency/model/e-" + name + "/-/v1/chat/completions"
		if err := waitFor(30*time.Second, func() bool { return post(url) == 200 }); err != nil {
			return fmt.Errorf("entity %s never routable: %w", name, err)
		}
		latencies = append(latencies, time.Since(start))
	}
	slices.Sort(latencies)
	p50, p99 := latencies[len(latencies)/2], latencies[int(0.99*float64(len(latencies)-1))]
	logf("route programming: p50 %s p99 %s", p50, p99)

	// Scale: many namespaces of providers and entities created as fast as the API server takes
	// them, then the time until the last one routes, the table build time and the RSS.
	rssBefore, anonBefore := rss(mgr.Process.Pid), rssOf(mgr.Process.Pid, "RssAnon:")
	start := time.Now()
	var lastURL string
	for n := 0; n < *namespaces; n++ {
		ns := "scale-" + strconv.Itoa(n)
		if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			return err
		}
		for i := 0; i < *providersPerNS; i++ {
			p := &inferencev1alpha1.Provider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "p" + strconv.Itoa(i)},
				Spec: inferencev1alpha1.ProviderSpec{URL: sim.URL, ServedModels: models[:4], HealthPath: "/health"}}
			if err := k8s.Create(ctx, p); err != nil {
				return err
			}
		}
		for i := 0; i < *entitiesPerNS; i++ {
			e := &inferencev1alpha1.ModelEntity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "e" + strconv.Itoa(i)},
				Spec: inferencev1alpha1.ModelEntitySpec{ServedModelName: models[i%4]}}
			if err := k8s.Create(ctx, e); err != nil {
				return err
			}
			lastURL = gateway + ns + "/model/e" + strconv.Itoa(i) + "/-/v1/chat/completions"
		}
	}
	created := time.Since(start)
	if err := waitFor(5*time.Minute, func() bool { return post(lastURL) == 200 }); err != nil {
		return fmt.Errorf("the last entity never routed: %w", err)
	}
	routable := time.Since(start)
	entities, providers := *namespaces**entitiesPerNS+*latencyObjects, *namespaces**providersPerNS+*latencyObjects
	// Let the probes of every provider land, then read the last build.
	if err := waitFor(2*time.Minute, func() bool { return lastBuild(logs.String(), entities) != "" }); err != nil {
		return fmt.Errorf("no build of the full table in the logs: %w", err)
	}
	time.Sleep(5 * time.Second)
	sum, count := histogram(metrics, "infergate_routing_table_build_duration_seconds")
	fmt.Printf("## Control plane benchmark\n\n`make bench-routing`: the manager binary against envtest (kube-apiserver v1.37.2, etcd v3.7.0) on the same machine.\n\n")
	fmt.Printf("| figure | value |\n|---|---|\n")
	fmt.Printf("| route programming latency, create Provider + ModelEntity → first 200 (%d pairs, one at a time) | p50 %s, p99 %s |\n", *latencyObjects, ms(p50), ms(p99))
	fmt.Printf("| scale: objects | %d ModelEntities, %d Providers in %d namespaces |\n", entities, providers, *namespaces+1)
	fmt.Printf("| scale: creating them through the API server | %s |\n", created.Round(time.Millisecond))
	fmt.Printf("| scale: from the first create until the last entity routes | %s |\n", routable.Round(time.Millisecond))
	fmt.Printf("| routing table build, the full table | %s |\n", lastBuild(logs.String(), entities))
	fmt.Printf("| routing table builds, mean over the run | %s over %.0f builds |\n", ms(time.Duration(sum/count*float64(time.Second))), count)
	fmt.Printf("| manager RSS before / after the scale phase | %.1f MiB / %.1f MiB (anonymous memory %.1f MiB / %.1f MiB) |\n",
		float64(rssBefore)/1024, float64(rss(mgr.Process.Pid))/1024, float64(anonBefore)/1024, float64(rssOf(mgr.Process.Pid, "RssAnon:"))/1024)
	return listPhase(ctx, env.Config, k8s, gateway, sim.URL, models[0])
}

// listPhase fills one workspace with entities and times its model list for a caller who may
// get them all (one SubjectAccessReview) and for one restricted to a single entity by
// resourceNames: in a workspace of more entities than the gateway reviews by name, 403 after
// one review, then cached.
func listPhase(ctx context.Context, cfg *rest.Config, k8s client.Client, gatewayURL, upstream, served string) error {
	const ns = "list"
	if err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		return err
	}
	if err := k8s.Create(ctx, &inferencev1alpha1.Provider{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "list-provider"},
		Spec: inferencev1alpha1.ProviderSpec{URL: upstream, ServedModels: []string{served}, HealthPath: "/health"}}); err != nil {
		return err
	}
	names := make(chan int)
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			var err error
			for i := range names {
				if err == nil {
					err = k8s.Create(ctx, &inferencev1alpha1.ModelEntity{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "e" + strconv.Itoa(i)},
						Spec: inferencev1alpha1.ModelEntitySpec{ServedModelName: served}})
				}
			}
			errs <- err
		}()
	}
	for i := 0; i < *listEntities; i++ {
		names <- i
	}
	close(names)
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			return err
		}
	}
	url := gatewayURL + ns + "/openai/-/v1/models"
	all := bearer
	one, err := callerToken(ctx, cfg, "bench-one", rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "one-entity"}, ns,
		[]rbacv1.PolicyRule{{APIGroups: []string{"inference.infergate.dev"}, Resources: []string{"modelentities/proxy"}, ResourceNames: []string{"e0"}, Verbs: []string{"get"}}})
	if err != nil {
		return err
	}
	if err := waitFor(2*time.Minute, func() bool { n, _ := listModels(url, all); return n == *listEntities }); err != nil {
		return fmt.Errorf("the model list never held %d entities: %w", *listEntities, err)
	}
	timeList := func(token string, wantCode, want, times int) ([]time.Duration, error) {
		var ds []time.Duration
		for i := 0; i < times; i++ {
			start := time.Now()
			n, code := listModels(url, token)
			if code != wantCode || n != want {
				return nil, fmt.Errorf("model list: status %d, %d entities, want %d and %d", code, n, wantCode, want)
			}
			ds = append(ds, time.Since(start))
		}
		slices.Sort(ds)
		return ds, nil
	}
	allTimes, err := timeList(all, http.StatusOK, *listEntities, 50)
	if err != nil {
		return err
	}
	oneCode, oneWant := http.StatusOK, 1
	if *listEntities > gateway.MaxListedByName { // 403 after one review
		oneCode, oneWant = http.StatusForbidden, 0
	}
	cold, err := timeList(one, oneCode, oneWant, 1)
	if err != nil {
		return err
	}
	warm, err := timeList(one, oneCode, oneWant, 20) // within the deny TTL (10s) of the first list's reviews
	if err != nil {
		return err
	}
	fmt.Printf("| model list of a workspace of %d entities, caller allowed all of them (one review, cached) | p50 %s, p99 %s |\n",
		*listEntities, ms(allTimes[len(allTimes)/2]), ms(allTimes[int(0.99*float64(len(allTimes)-1))]))
	fmt.Printf("| the same list, caller allowed one entity by resourceNames: first list (answered %d) | %s |\n", oneCode, ms(cold[0]))
	fmt.Printf("| the same list, caller allowed one entity: next lists (reviews cached) | p50 %s |\n", ms(warm[len(warm)/2]))
	return nil
}

// listModels returns how many models a model list holds, and its status.
func listModels(url, token string) (int, int) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	var list struct{ Data []json.RawMessage }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return 0, resp.StatusCode
	}
	return len(list.Data), resp.StatusCode
}

// callerToken creates ServiceAccount default/name, binds it to ref (in namespace ns, or
// cluster-wide when ns is empty; a Role of rules is created first when rules are given), and
// returns a token for it.
func callerToken(ctx context.Context, cfg *rest.Config, name string, ref rbacv1.RoleRef, ns string, rules []rbacv1.PolicyRule) (string, error) {
	token, err := testenv.ServiceAccountToken(ctx, cfg, "default", name)
	if err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: "default"}}
	switch {
	case ns == "":
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}, Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{"inference.infergate.dev"}, Resources: []string{"modelentities/proxy", "providers/proxy"}, Verbs: []string{"get", "create"}}}}, metav1.CreateOptions{}); err != nil {
			return "", err
		}
		if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, RoleRef: ref, Subjects: subjects}, metav1.CreateOptions{}); err != nil {
			return "", err
		}
	default:
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: ref.Name}, Rules: rules}, metav1.CreateOptions{}); err != nil {
			return "", err
		}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}, RoleRef: ref, Subjects: subjects}, metav1.CreateOptions{}); err != nil {
			return "", err
		}
	}
	return token, nil
}

var builtLine = regexp.MustCompile(`routing table built.*"entities": (\d+).*"took": "([^"]+)"`)

// lastBuild returns the duration of the last logged build of a table with n entities.
func lastBuild(logs string, n int) string {
	took := ""
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if m := builtLine.FindStringSubmatch(sc.Text()); m != nil && m[1] == strconv.Itoa(n) {
			took = m[2]
		}
	}
	return took
}

func histogram(addr, name string) (sum, count float64) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case name + "_sum":
			sum = v
		case name + "_count":
			count = v
		}
	}
	return sum, max(count, 1)
}

func status(url string) int {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func post(url string) int {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func waitFor(timeout time.Duration, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// rss returns a process's resident set size in KiB: its anonymous memory (heap, stacks) and
// the pages of its binary and other files it has touched.
func rss(pid int) int64 { return rssOf(pid, "VmRSS:") }

// rssOf returns a field of /proc/<pid>/status in KiB.
func rssOf(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == field {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
