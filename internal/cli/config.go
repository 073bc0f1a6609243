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
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"
)

// settings are what `kubectl inference config set` saves, per kubeconfig context.
type settings struct {
	Contexts map[string]contextSettings `json:"contexts,omitempty"`
}

type contextSettings struct {
	// GatewayURL is the gateway's base URL for the context.
	GatewayURL string `json:"gatewayURL,omitempty"`
}

// SettingsPathEnv overrides where the settings live, for tests and scripts.
const SettingsPathEnv = "INFERGATE_CLI_CONFIG"

// settingsPath is the settings file: $INFERGATE_CLI_CONFIG, else kubectl-inference.yaml in
// the user's config directory (~/.config/infergate on Linux).
func settingsPath() string {
	if p := os.Getenv(SettingsPathEnv); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "infergate", "kubectl-inference.yaml")
}

func loadSettings() (settings, error) {
	var s settings
	data, err := os.ReadFile(settingsPath())
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("read the settings: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return s, fmt.Errorf("the settings in %s do not parse: %w", settingsPath(), err)
	}
	return s, nil
}

// SaveGatewayURL records the gateway URL of a kubeconfig context; an empty URL forgets it.
func SaveGatewayURL(context, gatewayURL string) error {
	s, err := loadSettings()
	if err != nil {
		return err
	}
	if s.Contexts == nil {
		s.Contexts = map[string]contextSettings{}
	}
	if gatewayURL == "" {
		delete(s.Contexts, context)
	} else {
		s.Contexts[context] = contextSettings{GatewayURL: gatewayURL}
	}
	data, err := yaml.Marshal(s)
	if err != nil {
		return err
	}
	path := settingsPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o600)
}

func newConfigCommand(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Save how to reach the gateway, per kubeconfig context",
		Example: `  kubectl inference config set --gateway-url https://inference.example.com
  kubectl inference config view`,
		Args: cobra.NoArgs,
		RunE: requireCommand,
	}
	var unset bool
	set := &cobra.Command{
		Use:   "set --gateway-url URL",
		Short: "Save the gateway URL of the current context",
		Long: `Save the gateway URL of the current kubeconfig context (or --context), so that later commands
need no --gateway-url. The settings live in ` + "`~/.config/infergate/kubectl-inference.yaml`" + `
(or $` + SettingsPathEnv + `).`,
		Example: `  kubectl inference config set --gateway-url https://inference.example.com
  kubectl inference config set --unset`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u := strings.TrimRight(f.gateway.url, "/")
			switch {
			case unset && u != "":
				return usagef("give --gateway-url or --unset, not both")
			case !unset && u == "":
				return usagef("give --gateway-url URL, or --unset to forget it")
			case u != "":
				if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
					return usagef("--gateway-url %q is not an http(s) URL", u)
				}
			}
			name, err := f.contextName()
			if err != nil {
				return err
			}
			if err := SaveGatewayURL(name, u); err != nil {
				return err
			}
			if u == "" {
				fmt.Fprintf(f.streams.Out, "context %s: gateway URL forgotten\n", name)
			} else {
				fmt.Fprintf(f.streams.Out, "context %s: gateway URL %s\n", name, u)
			}
			return nil
		},
	}
	set.Flags().BoolVar(&unset, "unset", false, "forget the saved gateway URL")
	view := &cobra.Command{
		Use:     "view",
		Short:   "Show the saved settings",
		Example: `  kubectl inference config view`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := loadSettings()
			if err != nil {
				return err
			}
			data, err := yaml.Marshal(s)
			if err != nil {
				return err
			}
			fmt.Fprintf(f.streams.Out, "# %s\n%s", settingsPath(), data)
			return nil
		},
	}
	cmd.AddCommand(set, view)
	return cmd
}
