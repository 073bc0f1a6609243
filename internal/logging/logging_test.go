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

package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestJSONByDefaultAtInfo(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("provider ready", "provider", "ws/nim")
	log.V(1).Info("hidden at info")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("got %d lines, want 1:\n%s", len(lines), buf.String())
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &entry); err != nil {
		t.Fatalf("not JSON: %v: %s", err, lines[0])
	}
	if entry["msg"] != "provider ready" || entry["provider"] != "ws/nim" || entry["level"] != "info" {
		t.Errorf("unexpected entry %v", entry)
	}
}

func TestVerbosityLevels(t *testing.T) {
	var buf bytes.Buffer
	log, err := New(&buf, "2", "console")
	if err != nil {
		t.Fatal(err)
	}
	log.V(2).Info("shown")
	log.V(3).Info("hidden")
	if !strings.Contains(buf.String(), "shown") || strings.Contains(buf.String(), "hidden") {
		t.Errorf("verbosity 2 output:\n%s", buf.String())
	}
}

func TestBadValuesSayWhatIsAccepted(t *testing.T) {
	if _, err := New(&bytes.Buffer{}, "loud", "json"); err == nil || !strings.Contains(err.Error(), "debug, info, warn, error") {
		t.Errorf("bad level: %v", err)
	}
	if _, err := New(&bytes.Buffer{}, "info", "xml"); err == nil || !strings.Contains(err.Error(), "json, console") {
		t.Errorf("bad format: %v", err)
	}
}
