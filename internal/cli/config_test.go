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

package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// tokenRecorder is a gateway that answers the model list and records the bearer tokens it
// was shown.
type tokenRecorder struct {
	*httptest.Server
	mu     sync.Mutex
	tokens []string
}

func newTokenRecorder(t *testing.T) *tokenRecorder {
	r := &tokenRecorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.tokens = append(r.tokens, strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer "))
		r.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"object":"list","data":[]}`))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *tokenRecorder) seen() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...)
}

// writeKubeconfig writes a kubeconfig whose current context, named context, sends token to
// server.
func writeKubeconfig(t *testing.T, dir, context, server, token string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cluster"] = &clientcmdapi.Cluster{Server: server}
	cfg.AuthInfos["user"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts[context] = &clientcmdapi.Context{Cluster: "cluster", AuthInfo: "user", Namespace: "team"}
	cfg.CurrentContext = context
	path := filepath.Join(dir, "kubeconfig")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// runPlugin runs kubectl inference with args in this process and returns what it printed.
func runPlugin(args ...string) (stdout, stderr string, err error) {
	streams, _, out, errOut := genericiooptions.NewTestIOStreams()
	cmd := NewCommand(streams)
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// Two kubeconfigs with a context of the same name, for two clusters: the gateway URL saved
// for one is never used for the other, whose token would go to the first cluster's gateway.
func TestSavedGatewayURLIsTheClustersOnly(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(SettingsPathEnv, filepath.Join(dir, "kubectl-inference.yaml"))
	t.Setenv(envGatewayURL, "")
	t.Setenv(envToken, "")
	gw := newTokenRecorder(t)
	// Nothing listens on these servers: the cluster of each context is unreachable, and the
	// saved URL is the only way to the gateway.
	first := writeKubeconfig(t, filepath.Join(dir, "first"), "default", "https://127.0.0.1:1", "token-of-the-first-cluster")
	second := writeKubeconfig(t, filepath.Join(dir, "second"), "default", "https://127.0.0.2:1", "token-of-the-second-cluster")

	if out, errOut, err := runPlugin("--kubeconfig", first, "config", "set", "--gateway-url", gw.URL); err != nil || !strings.Contains(out, gw.URL) {
		t.Fatalf("config set: %v\n%s%s", err, out, errOut)
	}
	if _, errOut, err := runPlugin("--kubeconfig", first, "models", "list"); err != nil {
		t.Fatalf("models list with the first kubeconfig: %v\n%s", err, errOut)
	}
	if got := gw.seen(); len(got) != 1 || got[0] != "token-of-the-first-cluster" {
		t.Fatalf("the first cluster's gateway saw tokens %q, want the first cluster's", got)
	}

	tests := []struct {
		name string
		args []string
	}{
		{"models list", []string{"models", "list"}},
		{"chat", []string{"chat", "llama", "Hello"}},
		{"get-url", []string{"get-url"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, err := runPlugin(append([]string{"--kubeconfig", second}, tt.args...)...)
			if err == nil {
				t.Errorf("with the second kubeconfig, %s found a gateway:\n%s%s", tt.name, out, errOut)
			}
			if strings.Contains(out+errOut, gw.URL) {
				t.Errorf("with the second kubeconfig, %s used the first cluster's gateway URL:\n%s%s", tt.name, out, errOut)
			}
			for _, tok := range gw.seen() {
				if tok == "token-of-the-second-cluster" {
					t.Fatalf("the second cluster's token reached the first cluster's gateway (%s)", tt.name)
				}
			}
		})
	}

	// Each cluster keeps its own: the second one's setting, saved as the quickstart saves it,
	// does not replace the first's; forgotten, it leaves nothing of the second server behind.
	other := newTokenRecorder(t)
	if err := SaveGatewayURL(second, "default", other.URL); err != nil {
		t.Fatal(err)
	}
	for kubeconfig, want := range map[string]string{first: gw.URL, second: other.URL} {
		if out, errOut, err := runPlugin("--kubeconfig", kubeconfig, "get-url"); err != nil || !strings.HasPrefix(out, want+"/") {
			t.Errorf("get-url with %s: %q, want %s/...: %v %s", kubeconfig, out, want, err, errOut)
		}
	}
	if err := SaveGatewayURL(second, "default", ""); err != nil {
		t.Fatal(err)
	}
	out, _, err := runPlugin("--kubeconfig", first, "config", "view")
	if err != nil || !strings.Contains(out, "https://127.0.0.1:1:\n    default:\n      gatewayURL: "+gw.URL) || strings.Contains(out, "127.0.0.2") {
		t.Errorf("config view after forgetting the second cluster's URL: %v\n%s", err, out)
	}

	// A context name one program owns is forgotten for every server at once.
	if err := SaveGatewayURL(second, "default", other.URL); err != nil {
		t.Fatal(err)
	}
	if err := ForgetGatewayURLs("default"); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runPlugin("--kubeconfig", first, "config", "view"); err != nil || strings.Contains(out, "default") {
		t.Errorf("config view after forgetting context default: %v\n%s", err, out)
	}
}

// A settings file of the earlier format keyed the URL by context name alone: it could belong
// to any cluster with a context of that name. It is never used; the user is told once.
func TestGatewayURLSavedByContextNameAloneIsNotUsed(t *testing.T) {
	dir := t.TempDir()
	settings := filepath.Join(dir, "kubectl-inference.yaml")
	t.Setenv(SettingsPathEnv, settings)
	t.Setenv(envGatewayURL, "")
	t.Setenv(envToken, "")
	gw := newTokenRecorder(t)
	if err := os.WriteFile(settings, []byte("contexts:\n  default:\n    gatewayURL: "+gw.URL+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := writeKubeconfig(t, dir, "default", "https://127.0.0.1:1", "token-of-this-cluster")

	_, errOut, err := runPlugin("--kubeconfig", kubeconfig, "models", "list")
	if err == nil {
		t.Error("models list found a gateway: the URL saved by context name alone was used")
	}
	if got := gw.seen(); len(got) != 0 {
		t.Fatalf("the gateway saved by context name alone saw tokens %q", got)
	}
	if !strings.Contains(errOut, "kubectl inference config set --gateway-url "+gw.URL) {
		t.Errorf("stderr does not say how to save the URL again:\n%s", errOut)
	}
	_, errOut, _ = runPlugin("--kubeconfig", kubeconfig, "models", "list")
	if strings.Contains(errOut, "config set --gateway-url "+gw.URL) {
		t.Errorf("told twice:\n%s", errOut)
	}
	if len(gw.seen()) != 0 {
		t.Fatal("the gateway saved by context name alone was used on the second run")
	}
}
