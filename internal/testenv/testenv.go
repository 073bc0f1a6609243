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

// Package testenv starts a real kube-apiserver and etcd (controller-runtime's envtest) with the
// infergate CRDs installed. It serves the tests and the local quickstart; it is never part of
// the manager.
//
// The binaries come from KUBEBUILDER_ASSETS, which `make test` sets to the directory that
// hack/envtest-assets.sh builds (kube-apiserver, etcd and kubectl).
package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

// Scheme knows the built-in kinds and the infergate kinds.
var Scheme = newScheme()

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := inferencev1alpha1.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := gatewayv1beta1.Install(s); err != nil {
		panic(err)
	}
	return s
}

// RepoRoot returns the directory that holds go.mod, found by walking up from the working
// directory (a test's working directory is its package directory).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// AssetsDir returns KUBEBUILDER_ASSETS, or an error that says how to get it.
func AssetsDir() (string, error) {
	dir := os.Getenv("KUBEBUILDER_ASSETS")
	if dir == "" {
		return "", errors.New("KUBEBUILDER_ASSETS is not set: run the tests with `make test`, " +
			"or export KUBEBUILDER_ASSETS=$(hack/envtest-assets.sh) before `go test`")
	}
	for _, bin := range []string{"kube-apiserver", "etcd"} {
		if _, err := os.Stat(filepath.Join(dir, bin)); err != nil {
			return "", fmt.Errorf("KUBEBUILDER_ASSETS=%s has no %s: run hack/envtest-assets.sh", dir, bin)
		}
	}
	return dir, nil
}

// Kubectl returns the path of the kubectl that hack/envtest-assets.sh builds beside the
// control plane, so that tests use a client of the same version as the server.
func Kubectl() (string, error) {
	dir, err := AssetsDir()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubectl")
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("no kubectl in KUBEBUILDER_ASSETS=%s: run hack/envtest-assets.sh", dir)
	}
	return path, nil
}

// GatewayAPICRDs returns the path of the Gateway API ReferenceGrant CRD in the module cache
// (the sigs.k8s.io/gateway-api module that go.mod pins).
func GatewayAPICRDs() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "sigs.k8s.io/gateway-api").Output()
	if err != nil {
		return "", fmt.Errorf("locate the sigs.k8s.io/gateway-api module: %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		if out, err = exec.Command("go", "mod", "download", "-json", "sigs.k8s.io/gateway-api").Output(); err != nil {
			return "", fmt.Errorf("download the sigs.k8s.io/gateway-api module: %w", err)
		}
		var info struct{ Dir string }
		if err := json.Unmarshal(out, &info); err != nil {
			return "", err
		}
		dir = info.Dir
	}
	return filepath.Join(dir, "config", "crd", "standard", "gateway.networking.k8s.io_referencegrants.yaml"), nil
}

// Options change what Start installs.
type Options struct {
	// ExtraCRDPaths are directories or files of further CRDs to install, such as Gateway API's.
	ExtraCRDPaths []string
	// WithoutCRDs starts a bare API server, without the infergate CRDs.
	WithoutCRDs bool
	// Dir, when set, holds etcd's data and the API server's certificates (in "etcd" and
	// "apiserver"), so that a caller can find and remove them; what they hold from an earlier
	// run is removed first. By default they go to temporary directories that env.Stop() removes.
	Dir string
}

// Start starts an API server with the infergate CRDs installed and returns the running
// environment; the caller stops it with env.Stop().
func Start(opts Options) (*envtest.Environment, error) {
	assets, err := AssetsDir()
	if err != nil {
		return nil, err
	}
	root, err := RepoRoot()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		ErrorIfCRDPathMissing: true,
		Scheme:                Scheme,
		CRDInstallOptions:     envtest.CRDInstallOptions{Scheme: Scheme},
	}
	if opts.Dir != "" {
		env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(opts.Dir, "etcd")}
		env.ControlPlane.APIServer = &envtest.APIServer{CertDir: filepath.Join(opts.Dir, "apiserver")}
		// envtest keeps certificates it finds and then never learns their CA: start afresh.
		for _, d := range []string{env.ControlPlane.Etcd.DataDir, env.ControlPlane.APIServer.CertDir} {
			if err := os.RemoveAll(d); err != nil {
				return nil, err
			}
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, err
			}
		}
	}
	if !opts.WithoutCRDs {
		env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, filepath.Join(root, "config", "crd", "bases"))
	}
	env.CRDDirectoryPaths = append(env.CRDDirectoryPaths, opts.ExtraCRDPaths...)
	if _, err := env.Start(); err != nil {
		return nil, fmt.Errorf("start envtest: %w", err)
	}
	return env, nil
}

// WriteKubeconfig writes a kubeconfig for a cluster-admin user of env into dir and returns its
// path, for kubectl and for processes such as the manager binary.
func WriteKubeconfig(env *envtest.Environment, dir string) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "infergate-test-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("add envtest user: %w", err)
	}
	data, err := user.KubeConfig()
	if err != nil {
		return "", fmt.Errorf("render kubeconfig: %w", err)
	}
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// ServiceAccountToken creates the ServiceAccount namespace/name (and its namespace) unless they
// exist, and returns a token for it from the TokenRequest API, as `kubectl create token` does:
// valid for an hour, for the given audiences or, with none, the API server's own.
func ServiceAccountToken(ctx context.Context, cfg *rest.Config, namespace, name string, audiences ...string) (string, error) {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", err
	}
	expiry := int64(3600)
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token for ServiceAccount %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}
