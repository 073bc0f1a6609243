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

// Package cli is kubectl-inference, the kubectl plugin for the gateway side of infergate: the
// models and providers it routes now, chat, raw calls to the model and provider routes, base
// URLs for SDKs, and waiting until something is routable. Each command is a file with its
// options type and the Complete/Validate/Run steps of kubectl's own commands.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Exit codes, as kubectl's: 0 success, 1 an error, and a distinct code for a command line that
// cannot be run as written.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// usageError is a command line that cannot be run as written.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// Main runs kubectl-inference with the process's arguments and streams, and returns its exit
// code.
func Main() int {
	streams := genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	cmd := NewCommand(streams)
	ran, err := cmd.ExecuteContextC(context.Background())
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(streams.ErrOut, "error:", err)
	var usage *usageError
	if errors.As(err, &usage) {
		fmt.Fprintf(streams.ErrOut, "See '%s -h' for help and examples.\n", ran.CommandPath())
		return ExitUsage
	}
	return ExitError
}

// NewCommand returns the kubectl-inference command tree.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	g := &gatewayFlags{}
	cmd := &cobra.Command{
		Use:         "kubectl-inference",
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl inference"},
		Short:       "Call models through the infergate gateway",
		Long: `kubectl inference talks to the infergate gateway: the models and providers it routes now,
chat with a model entity or a provider, raw calls to the model and provider routes, and the base
URLs to give an OpenAI SDK.

The gateway is found from --gateway-url, else $INFERGATE_GATEWAY_URL, else the setting saved for
the current context and the API server it talks to (kubectl inference config set --gateway-url
...), else in the cluster: its Service, reached through a port-forward to a ready gateway pod.
When the gateway authenticates callers, requests carry --token, else $INFERGATE_TOKEN, else the
current context's token (or its exec credential plugin's).`,
		Example: `  # The models that the gateway routes in the current namespace, and those it does not.
  kubectl inference models list --all

  # Chat with one of them; the answer streams in as it is written.
  kubectl inference chat llama-3-1-8b-instruct "Write a haiku about Kubernetes"

  # The base URL to give an OpenAI SDK for namespace team-a.
  kubectl inference get-url -n team-a`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE:          requireCommand,
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{err.Error()} })
	flags.AddFlags(cmd.PersistentFlags())
	g.addFlags(cmd)

	f := &factory{flags: flags, gateway: g, streams: streams}
	cmd.AddCommand(
		newModelsCommand(f),
		newProvidersCommand(f),
		newChatCommand(f),
		newGatewayCommand(f),
		newGetURLCommand(f),
		newWaitCommand(f),
		newConfigCommand(f),
	)
	return cmd
}

// requireCommand is the RunE of a command that only groups others: run bare, it is a usage
// error that names them.
func requireCommand(cmd *cobra.Command, _ []string) error {
	return usagef("a command is needed: %s", commandNames(cmd))
}

// commandNames lists the subcommands of cmd, for a usage error.
func commandNames(cmd *cobra.Command) string {
	var names []string
	for _, c := range cmd.Commands() {
		if c.IsAvailableCommand() {
			names = append(names, c.Name())
		}
	}
	return strings.Join(names, ", ")
}

// exactArgs is cobra.ExactArgs with a usage error that names what is missing.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("want %s, got %d arguments", what, len(args))
		}
		return nil
	}
}
