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
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// settings are what `kubectl inference config set` saves: the gateway URL of a kubeconfig
// context, under the API server that context talks to. A context name alone says little:
// "default" or "kind-kind" may name a context of another cluster in another kubeconfig, whose
// token must not go to this cluster's gateway.
type settings struct {
	// Servers maps an API server URL to its contexts' settings, by context name.
	Servers map[string]map[string]contextSettings `json:"servers,omitempty"`
	// Contexts is the format of earlier versions, by context name alone. It is never used;
	// an entry is reported once, with the command that saves it again, and dropped.
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

func (s settings) save() error {
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

// gatewayURL is the URL saved for context of server, "" when there is none.
func (s settings) gatewayURL(server, context string) string {
	return s.Servers[serverKey(server)][context].GatewayURL
}

// serverKey is how an API server URL keys the settings.
func serverKey(server string) string { return strings.TrimRight(server, "/") }

// SaveGatewayURL records the gateway URL of a context of the kubeconfig file (kubectl's own
// files when it is ""), under the API server that context talks to; an empty URL forgets it.
func SaveGatewayURL(kubeconfig, context, gatewayURL string) error {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return fmt.Errorf("read context %s of the kubeconfig: %w", context, err)
	}
	return saveGatewayURL(cfg.Host, context, gatewayURL)
}

// ForgetGatewayURLs forgets the gateway URLs saved for a context name, whichever API server
// it talked to. It is for a context name that one program owns, such as the quickstart's,
// whose API server changes from run to run; a person's context names are forgotten per
// server, with SaveGatewayURL.
func ForgetGatewayURLs(context string) error {
	s, err := loadSettings()
	if err != nil {
		return err
	}
	delete(s.Contexts, context)
	for server, contexts := range s.Servers {
		delete(contexts, context)
		if len(contexts) == 0 {
			delete(s.Servers, server)
		}
	}
	return s.save()
}

func saveGatewayURL(server, context, gatewayURL string) error {
	s, err := loadSettings()
	if err != nil {
		return err
	}
	server = serverKey(server)
	delete(s.Contexts, context) // saved again, or forgotten: the earlier format's entry is done with
	if gatewayURL == "" {
		delete(s.Servers[server], context)
		if len(s.Servers[server]) == 0 {
			delete(s.Servers, server)
		}
		return s.save()
	}
	if s.Servers == nil {
		s.Servers = map[string]map[string]contextSettings{}
	}
	if s.Servers[server] == nil {
		s.Servers[server] = map[string]contextSettings{}
	}
	s.Servers[server][context] = contextSettings{GatewayURL: gatewayURL}
	return s.save()
}

// savedGatewayURL is the gateway URL saved for the current context and the API server it
// talks to, and where it came from; "" when there is none, or no kubeconfig to say which
// context and server are current. A URL saved by the earlier format for a context of that
// name is not used: the user is told once how to save it again.
func (f *factory) savedGatewayURL() (url, source string, err error) {
	name, err := f.contextName()
	if err != nil {
		return "", "", nil
	}
	server, err := f.server()
	if err != nil {
		return "", "", nil
	}
	s, err := loadSettings()
	if err != nil {
		return "", "", err
	}
	if old, ok := s.Contexts[name]; ok {
		fmt.Fprintf(f.streams.ErrOut, "note: the gateway URL %s saved for context %s by an earlier version of kubectl inference is no longer used: "+
			"it was saved by context name alone, and a context of that name may be another cluster's. If it is the gateway of %s, "+
			"save it again: kubectl inference config set --gateway-url %s\n", old.GatewayURL, name, server, old.GatewayURL)
		delete(s.Contexts, name)
		_ = s.save() // told once; should the file not be writable, told again next time
	}
	if u := s.gatewayURL(server, name); u != "" {
		return strings.TrimRight(u, "/"), "the setting saved for context " + name + " of " + server + " (" + settingsPath() + ")", nil
	}
	return "", "", nil
}

func newConfigCommand(f *factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Save how to reach the gateway, per kubeconfig context and API server",
		Example: `  kubectl inference config set --gateway-url https://inference.example.com
  kubectl inference config view`,
		Args: cobra.NoArgs,
		RunE: requireCommand,
	}
	var unset bool
	set := &cobra.Command{
		Use:   "set --gateway-url URL",
		Short: "Save the gateway URL of the current context and its API server",
		Long: `Save the gateway URL of the current kubeconfig context (or --context), so that later commands
need no --gateway-url. It is saved under the context's name and the API server it talks to: a
context of the same name in another kubeconfig, for another cluster, does not get it. The
settings live in ` + "`~/.config/infergate/kubectl-inference.yaml`" + ` (or $` + SettingsPathEnv + `).`,
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
			server, err := f.server()
			if err != nil {
				return err
			}
			if err := saveGatewayURL(server, name, u); err != nil {
				return err
			}
			if u == "" {
				fmt.Fprintf(f.streams.Out, "context %s of %s: gateway URL forgotten\n", name, server)
			} else {
				fmt.Fprintf(f.streams.Out, "context %s of %s: gateway URL %s\n", name, server, u)
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
