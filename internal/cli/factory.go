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
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

// Environment variables that stand in for flags.
const (
	envGatewayURL = "INFERGATE_GATEWAY_URL"
	envToken      = "INFERGATE_TOKEN"
)

// gatewayFlags say how to reach the gateway. The token comes from kubectl's own --token.
type gatewayFlags struct {
	url       string
	namespace string // where to look for the gateway Service
}

func (g *gatewayFlags) addFlags(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&g.url, "gateway-url", "", "base URL of the gateway, such as http://127.0.0.1:8000 (default: $"+envGatewayURL+", the setting saved for the context and its API server, or a port-forward to the gateway in the cluster)")
	f.StringVar(&g.namespace, "gateway-namespace", "", "namespace of the gateway Service to port-forward to (default: wherever it is installed)")
}

// factory gives commands what they share: the cluster, the gateway and the streams.
type factory struct {
	flags   *genericclioptions.ConfigFlags
	gateway *gatewayFlags
	streams genericiooptions.IOStreams
}

// namespace is the workspace a command acts in: -n, else the context's namespace.
func (f *factory) namespace() (string, error) {
	ns, _, err := f.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return "", fmt.Errorf("read the namespace of the current context: %w", err)
	}
	return ns, nil
}

// contextName is the kubeconfig context in use, which keys the saved settings with server.
func (f *factory) contextName() (string, error) {
	if f.flags.Context != nil && *f.flags.Context != "" {
		return *f.flags.Context, nil
	}
	raw, err := f.flags.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return "", fmt.Errorf("read the kubeconfig: %w", err)
	}
	if raw.CurrentContext == "" {
		return "", fmt.Errorf("the kubeconfig has no current context: set one with kubectl config use-context, or pass --context")
	}
	return raw.CurrentContext, nil
}

// server is the URL of the API server that the context in use talks to, after --server,
// --cluster and --context.
func (f *factory) server() (string, error) {
	cfg, err := f.flags.ToRawKubeConfigLoader().ClientConfig()
	if err != nil {
		return "", fmt.Errorf("read the kubeconfig: %w", err)
	}
	return serverKey(cfg.Host), nil
}

func (f *factory) restConfig() (*rest.Config, error) {
	cfg, err := f.flags.ToRESTConfig()
	if err != nil {
		return nil, fmt.Errorf("no cluster to talk to: %w", err)
	}
	return cfg, nil
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = inferencev1alpha1.AddToScheme(s)
	return s
}()

// cluster returns a client for the infergate resources of the cluster.
func (f *factory) cluster() (client.Client, error) {
	cfg, err := f.restConfig()
	if err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

func (f *factory) clientset() (*kubernetes.Clientset, *rest.Config, error) {
	cfg, err := f.restConfig()
	if err != nil {
		return nil, nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	return cs, cfg, err
}

// gatewayClient reaches the gateway as the flags, the environment, the saved setting or the
// cluster say, and stops what it started (a port-forward) when ctx ends.
func (f *factory) gatewayClient(ctx context.Context) (*gatewayClient, error) {
	token, err := f.token()
	if err != nil {
		return nil, err
	}
	url, source, err := f.gatewayURL(ctx)
	if err != nil {
		return nil, err
	}
	return newGatewayClient(url, source, token), nil
}

// gatewayURL resolves the gateway's base URL and says where it came from.
func (f *factory) gatewayURL(ctx context.Context) (url, source string, err error) {
	if u := strings.TrimSpace(f.gateway.url); u != "" {
		return strings.TrimRight(u, "/"), "--gateway-url", nil
	}
	if u := strings.TrimSpace(os.Getenv(envGatewayURL)); u != "" {
		return strings.TrimRight(u, "/"), "$" + envGatewayURL, nil
	}
	if u, source, err := f.savedGatewayURL(); err != nil || u != "" {
		return u, source, err
	}
	cs, cfg, err := f.clientset()
	if err != nil {
		return "", "", fmt.Errorf("%w; or give the gateway's URL with --gateway-url, $%s, or kubectl inference config set --gateway-url", err, envGatewayURL)
	}
	target, err := findGateway(ctx, cs, f.gateway.namespace)
	if err != nil {
		return "", "", fmt.Errorf("%w; or give the gateway's URL with --gateway-url, $%s, or kubectl inference config set --gateway-url", err, envGatewayURL)
	}
	local, err := portForward(ctx, cfg, cs, target, f.streams.ErrOut)
	if err != nil {
		return "", "", fmt.Errorf("port-forward to pod %s/%s: %w; or give the gateway's URL with --gateway-url", target.Pod.Namespace, target.Pod.Name, err)
	}
	return local, fmt.Sprintf("a port-forward to pod %s/%s of Service %s/%s", target.Pod.Namespace, target.Pod.Name, target.Service.Namespace, target.Service.Name), nil
}
