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
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"
)

// newGatewayCommand is `kubectl inference gateway provider|model VERB TRAILING_PATH`: the raw
// provider and model routes, as the NeMo CLI's `inference gateway` commands.
func newGatewayCommand(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "gateway",
		Short: "Call the raw provider and model routes",
		Example: `  kubectl inference gateway provider get v1/models --name nvidia-build -n system
  kubectl inference gateway model post v1/chat/completions --name llama-3-1-8b-instruct --body @request.json`,
		Args: cobra.NoArgs,
		RunE: requireCommand,
	}
	cmd.AddCommand(newRouteCommand(f, "provider", "a provider's own API, with its key and nothing rewritten",
		`  # The models a provider itself lists.
  kubectl inference gateway provider get v1/models --name nvidia-build -n system

  # A completion, straight from a provider, with the provider's own model id.
  kubectl inference gateway provider post v1/chat/completions --name nim-a \
    --body '{"model":"meta/llama-3.1-8b-instruct","messages":[{"role":"user","content":"Hello"}]}'`),
		newRouteCommand(f, "model", "a model entity's provider, the body's model set to its served name",
			`  kubectl inference gateway model post v1/chat/completions --name llama-3-1-8b-instruct \
    --body '{"messages":[{"role":"user","content":"Hello"}]}'
  kubectl inference gateway model post v1/embeddings --name nv-embed --body @request.json`))
	return cmd
}

type routeOptions struct {
	f         *factory
	route     string // provider or model
	method    string
	trailing  string
	name      string
	body      string
	namespace string
	data      []byte
}

func newRouteCommand(f *factory, route, what, example string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   route + " get|post|put|patch|delete TRAILING_PATH --name NAME [--body JSON|@FILE]",
		Short: "Call the " + route + " route: " + what,
		Long: "Send one request to .../" + route + "/NAME/-/TRAILING_PATH and print the answer's body as it comes\n" +
			"(its status on standard error). The command fails when the status is 400 or more.",
		Example: example,
		Args:    cobra.NoArgs,
		RunE:    func(cmd *cobra.Command, _ []string) error { return usagef("a method is needed: %s", commandNames(cmd)) },
	}
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		o := &routeOptions{f: f, route: route, method: method}
		verb := &cobra.Command{
			Use:     strings.ToLower(method) + " TRAILING_PATH --name NAME",
			Short:   method + " through the " + route + " route",
			Example: example,
			Args:    exactArgs(1, "the TRAILING_PATH after /-/, such as v1/models"),
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := o.complete(args); err != nil {
					return err
				}
				return o.run(cmd.Context())
			},
		}
		verb.Flags().StringVar(&o.name, "name", "", "the "+route+" (required)")
		verb.Flags().StringVar(&o.body, "body", "", "the request body: JSON, or @FILE to read it from a file (@- for standard input)")
		cmd.AddCommand(verb)
	}
	return cmd
}

func (o *routeOptions) complete(args []string) error {
	if o.name == "" {
		return usagef("--name is required: the %s to call", o.route)
	}
	o.trailing = strings.TrimPrefix(args[0], "/")
	var err error
	if o.namespace, err = o.f.namespace(); err != nil {
		return err
	}
	switch {
	case o.body == "":
	case o.body == "@-":
		o.data, err = io.ReadAll(o.f.streams.In)
	case strings.HasPrefix(o.body, "@"):
		o.data, err = os.ReadFile(o.body[1:])
	default:
		o.data = []byte(o.body)
	}
	if err != nil {
		return fmt.Errorf("read the body: %w", err)
	}
	return nil
}

func (o *routeOptions) run(ctx context.Context) error {
	gw, err := o.f.gatewayClient(ctx)
	if err != nil {
		return err
	}
	header := http.Header{}
	var body io.Reader
	if o.data != nil {
		body = bytes.NewReader(o.data)
		if json.Valid(o.data) {
			header.Set("Content-Type", "application/json")
		}
	}
	url := gw.workspace(o.namespace) + "/" + o.route + "/" + o.name + "/-/" + o.trailing
	resp, err := gw.do(ctx, o.method, url, body, header)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	fmt.Fprintf(o.f.streams.ErrOut, "%s %s\n", resp.Proto, resp.Status)
	if resp.StatusCode >= 400 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		fmt.Fprintf(o.f.streams.Out, "%s\n", bytes.TrimRight(data, "\n"))
		return gw.answerError(resp.StatusCode, data)
	}
	// Streams (server-sent events) come through as they arrive: standard output is not buffered.
	if _, err := io.Copy(o.f.streams.Out, resp.Body); err != nil {
		return err
	}
	fmt.Fprintln(o.f.streams.Out)
	return nil
}
