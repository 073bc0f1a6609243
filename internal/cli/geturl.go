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
	"strconv"
	"strings"

	"github.com/spf13/cobra"
)

type getURLOptions struct {
	f         *factory
	namespace string
	provider  string
	model     string
}

func newGetURLCommand(f *factory) *cobra.Command {
	o := &getURLOptions{f: f}
	cmd := &cobra.Command{
		Use:   "get-url [--provider P | --model M]",
		Short: "Print the base URL to give an OpenAI SDK",
		Long: `Print the OpenAI base URL of the namespace's workspace (.../openai/-/v1), or with --provider or
--model the provider or model route up to /- (append the provider's own path, such as /v1).

The URL starts with the gateway URL that --gateway-url, $INFERGATE_GATEWAY_URL or the saved
setting give; without one, with the in-cluster address of the gateway Service, for SDKs that
run in the cluster.`,
		Example: `  kubectl inference get-url -n team-a
  kubectl inference get-url --provider nvidia-build -n system
  kubectl inference get-url --model llama-3-1-8b-instruct`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.provider != "" && o.model != "" {
				return usagef("give --provider or --model, not both")
			}
			var err error
			if o.namespace, err = f.namespace(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.provider, "provider", "", "print the provider route of this provider, up to /-")
	cmd.Flags().StringVar(&o.model, "model", "", "print the model route of this model entity, up to /-")
	return cmd
}

func (o *getURLOptions) run(ctx context.Context) error {
	base, err := o.base(ctx)
	if err != nil {
		return err
	}
	ws := base + routePrefix + o.namespace
	url := ws + "/openai/-/v1"
	switch {
	case o.provider != "":
		url = ws + "/provider/" + o.provider + "/-"
	case o.model != "":
		url = ws + "/model/" + o.model + "/-"
	}
	_, err = fmt.Fprintln(o.f.streams.Out, url)
	return err
}

// base is the gateway URL that was given, else the gateway Service's in-cluster address: a
// port-forward's local port would not outlive this command.
func (o *getURLOptions) base(ctx context.Context) (string, error) {
	if u := strings.TrimSpace(o.f.gateway.url); u != "" {
		return strings.TrimRight(u, "/"), nil
	}
	if u := strings.TrimSpace(os.Getenv(envGatewayURL)); u != "" {
		return strings.TrimRight(u, "/"), nil
	}
	if u, _, err := o.f.savedGatewayURL(); err != nil || u != "" {
		return u, err
	}
	cs, _, err := o.f.clientset()
	if err != nil {
		return "", err
	}
	services, err := gatewayServices(ctx, cs, o.f.gateway.namespace)
	if err != nil {
		return "", err
	}
	if len(services) != 1 {
		return "", fmt.Errorf("found %d gateway Services: give the gateway's URL with --gateway-url, or its namespace with --gateway-namespace", len(services))
	}
	svc := services[0]
	url := "http://" + svc.Name + "." + svc.Namespace + ".svc"
	if len(svc.Spec.Ports) > 0 && svc.Spec.Ports[0].Port != 80 {
		url += ":" + strconv.Itoa(int(svc.Spec.Ports[0].Port))
	}
	return url, nil
}
