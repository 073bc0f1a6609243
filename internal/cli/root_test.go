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
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
)

// Every command of the plugin shows examples in its help, written as kubectl inference.
func TestEveryCommandHasExamples(t *testing.T) {
	streams, _, _, _ := genericiooptions.NewTestIOStreams()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Hidden || c.Name() == "help" || c.Name() == "completion" || (c.Parent() != nil && c.Parent().Name() == "completion") {
			return
		}
		if c.Example == "" {
			t.Errorf("%s has no examples", c.CommandPath())
		}
		for _, line := range strings.Split(c.Example, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "kubectl inference ") &&
				!strings.HasPrefix(l, "echo ") && !strings.HasPrefix(l, "kubectl apply ") && !strings.HasPrefix(l, "--") {
				t.Errorf("%s: example line %q is not a kubectl inference command", c.CommandPath(), l)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	root := NewCommand(streams)
	if root.CommandPath() != "kubectl inference" {
		t.Errorf("the command calls itself %q, want kubectl inference", root.CommandPath())
	}
	walk(root)
}
