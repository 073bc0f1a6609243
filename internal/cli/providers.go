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
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
)

func newProvidersCommand(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "providers",
		Aliases: []string{"provider"},
		Short:   "List the Providers and whether the gateway routes to them",
		Example: `  kubectl inference providers list -n system`,
		Args:    cobra.NoArgs,
		RunE:    requireCommand,
	}
	cmd.AddCommand(newProvidersListCommand(f))
	return cmd
}

// providerInfo is a Provider as `providers list` shows it.
type providerInfo struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	URL       string   `json:"url,omitempty"`
	Models    []string `json:"models"`
	// Routable is what the gateway answers on .../provider/NAME/ready: "true", "false", or
	// the status it answered instead (such as 403 without the right to ask).
	Routable string `json:"routable"`
	Reason   string `json:"reason,omitempty"`
	Message  string `json:"message,omitempty"`
	age      time.Time
}

type providersListOptions struct {
	f             *factory
	namespace     string
	allNamespaces bool
	output        string
}

func newProvidersListCommand(f *factory) *cobra.Command {
	o := &providersListOptions{f: f}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the Providers of a namespace, with their models and readiness as the gateway sees it",
		Long: `List the Providers of a namespace with their URL and models, and ask the gateway whether it
routes to each (GET .../provider/NAME/ready).`,
		Example: `  kubectl inference providers list
  kubectl inference providers list -n system -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.output, outputWide, outputJSON, outputYAML, outputName); err != nil {
				return err
			}
			var err error
			if o.namespace, err = f.namespace(); err != nil {
				return err
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list the Providers of every namespace")
	addOutputFlag(cmd, &o.output, outputWide, outputJSON, outputYAML, outputName)
	return cmd
}

func (o *providersListOptions) run(ctx context.Context) error {
	c, err := o.f.cluster()
	if err != nil {
		return err
	}
	var list inferencev1alpha1.ProviderList
	var opts []client.ListOption
	if !o.allNamespaces {
		opts = append(opts, client.InNamespace(o.namespace))
	}
	if err := c.List(ctx, &list, opts...); err != nil {
		return fmt.Errorf("list Providers: %w", err)
	}
	gw, err := o.f.gatewayClient(ctx)
	if err != nil {
		return err
	}
	providers := make([]providerInfo, 0, len(list.Items))
	for _, p := range list.Items {
		info := providerInfo{Namespace: p.Namespace, Name: p.Name, URL: p.Status.URL, Models: p.Status.Models, age: p.CreationTimestamp.Time}
		if info.Models == nil {
			info.Models = []string{}
		}
		if cond := meta.FindStatusCondition(p.Status.Conditions, inferencev1alpha1.ConditionReady); cond != nil {
			info.Reason, info.Message = cond.Reason, cond.Message
		}
		var ready struct{}
		switch err := gw.getJSON(ctx, gw.workspace(p.Namespace)+"/provider/"+p.Name+"/ready", &ready); {
		case err == nil:
			info.Routable = "true"
		case isStatus(err, http.StatusNotFound):
			info.Routable = "false"
		default:
			var ge *gatewayError
			if !errors.As(err, &ge) {
				return err
			}
			info.Routable = strconv.Itoa(ge.Status)
		}
		providers = append(providers, info)
	}
	out := o.f.streams.Out
	switch o.output {
	case outputJSON, outputYAML:
		return writeData(out, o.output, map[string]any{"items": providers})
	case outputName:
		for _, p := range providers {
			fmt.Fprintln(out, p.Namespace+"/"+p.Name)
		}
		return nil
	}
	if len(providers) == 0 {
		fmt.Fprintf(o.f.streams.ErrOut, "No Providers in namespace %s.\n", o.namespace)
		return nil
	}
	t := &table{header: []string{"NAME", "URL", "MODELS", "ROUTABLE", "REASON", "AGE"}}
	if o.allNamespaces {
		t.header = append([]string{"NAMESPACE"}, t.header...)
	}
	if o.output == outputWide {
		t.header = append(t.header, "MESSAGE")
	}
	for _, p := range providers {
		models := strings.Join(p.Models, ",")
		if o.output != outputWide && len(p.Models) > 3 {
			models = strings.Join(p.Models[:3], ",") + fmt.Sprintf(" + %d more", len(p.Models)-3)
		}
		row := []string{p.Name, p.URL, models, p.Routable, p.Reason, since(p.age)}
		if o.allNamespaces {
			row = append([]string{p.Namespace}, row...)
		}
		if o.output == outputWide {
			row = append(row, p.Message)
		}
		t.add(row...)
	}
	return t.write(out)
}
