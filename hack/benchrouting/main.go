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
// a change takes to become routable (create → first 200 through the gateway), and the cost of
// a large cluster (time to build the routing table, manager RSS).
//
//	make bench-routing
package main

import (
	"bufio"
	"bytes"
	"context"
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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
)

var (
	latencyObjects = flag.Int("latency-objects", 100, "entities created one at a time for the latency figure")
	namespaces     = flag.Int("namespaces", 50, "namespaces of the scale phase")
	providersPerNS = flag.Int("providers-per-namespace", 10, "providers per namespace")
	entitiesPerNS  = flag.Int("entities-per-namespace", 40, "model entities per namespace")
)

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
		"--health-probe-bind-address", "0", "--log-format", "console")
	mgr.Stdout, mgr.Stderr = &logs, &logs
	if err := mgr.Start(); err != nil {
		return err
	}
	defer func() {
		_ = mgr.Process.Signal(syscall.SIGTERM)
		_ = mgr.Wait()
	}()
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
	rssBefore := rss(mgr.Process.Pid)
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
	fmt.Printf("| manager RSS before / after the scale phase | %.1f MiB / %.1f MiB |\n", float64(rssBefore)/1024, float64(rss(mgr.Process.Pid))/1024)
	return nil
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
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func post(url string) int {
	resp, err := http.Post(url, "application/json", strings.NewReader(`{"messages":[{"role":"user","content":"hi"}]}`))
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

func rss(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
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
