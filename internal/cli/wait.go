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
	"net/url"
	"time"

	"github.com/spf13/cobra"
)

type waitOptions struct {
	f         *factory
	kind      string // provider or model
	name      string
	namespace string
	timeout   time.Duration
}

func newWaitCommand(f *factory) *cobra.Command {
	o := &waitOptions{f: f}
	cmd := &cobra.Command{
		Use:   "wait provider|model NAME [--timeout 60s]",
		Short: "Wait until the gateway routes a provider or a model",
		Long: `Wait until the gateway routes a provider (GET .../provider/NAME/ready answers 200) or a model
(GET .../openai/-/v1/models/NAME answers 200): not only until its condition is set, but until the
gateway of this replica has it in its routing table.`,
		Example: `  kubectl apply -f model.yaml && kubectl inference wait model llama-3-1-8b-instruct
  kubectl inference wait provider nvidia-build -n system --timeout 2m`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 || (args[0] != "provider" && args[0] != "model") {
				return usagef("want provider or model, then NAME")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.kind, o.name = args[0], args[1]
			var err error
			if o.namespace, err = f.namespace(); err != nil {
				return err
			}
			if o.kind == "model" {
				o.namespace, o.name = splitModel(o.name, o.namespace)
			}
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().DurationVar(&o.timeout, "timeout", 60*time.Second, "how long to wait")
	return cmd
}

func (o *waitOptions) run(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	gw, err := o.f.gatewayClient(ctx)
	if err != nil {
		return err
	}
	target := gw.workspace(o.namespace) + "/provider/" + url.PathEscape(o.name) + "/ready"
	if o.kind == "model" {
		target = gw.openAIBase(o.namespace) + "/models/" + url.PathEscape(o.name)
	}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		var ignored struct{}
		last = gw.getJSON(ctx, target, &ignored)
		switch {
		case last == nil:
			fmt.Fprintf(o.f.streams.Out, "%s %s/%s is routable\n", o.kind, o.namespace, o.name)
			return nil
		case errors.Is(last, context.DeadlineExceeded), errors.Is(last, context.Canceled):
			return fmt.Errorf("%s %s/%s is not routable after %s", o.kind, o.namespace, o.name, o.timeout)
		case !isStatus(last, http.StatusNotFound) && !isStatus(last, http.StatusServiceUnavailable):
			return last // refused, unreachable: waiting will not change it
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %s/%s is not routable after %s: %w", o.kind, o.namespace, o.name, o.timeout, last)
		case <-tick.C:
		}
	}
}
