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

package testutil

import (
	"encoding/json"
	"os"
	"sync"
	"testing"
)

// ChaosFull reports whether the fault and soak scenarios run at full size, as `make chaos`
// asks with INFERGATE_CHAOS=full; `make test` runs a lean subset of them.
func ChaosFull() bool { return os.Getenv("INFERGATE_CHAOS") == "full" }

// ChaosSize returns lean, or full when the scenarios run at full size.
func ChaosSize[T any](lean, full T) T {
	if ChaosFull() {
		return full
	}
	return lean
}

// ChaosRow is one scenario's line in the report of `make chaos`.
type ChaosRow struct {
	Scenario  string         `json:"scenario"`
	Sent      int            `json:"sent"`
	Succeeded int            `json:"succeeded"`
	Failed    map[string]int `json:"failed,omitempty"` // by HTTP status, or by what the client saw
	Figure    string         `json:"figure"`           // the figure that matters for the scenario
}

var chaosMu sync.Mutex

// ReportChaos logs a scenario's row and, when INFERGATE_CHAOS_REPORT names a file, appends it
// there as a JSON line for hack/chaosreport to print.
func ReportChaos(t testing.TB, row ChaosRow) {
	t.Helper()
	t.Logf("%s: sent %d, succeeded %d, failed %v: %s", row.Scenario, row.Sent, row.Succeeded, row.Failed, row.Figure)
	path := os.Getenv("INFERGATE_CHAOS_REPORT")
	if path == "" {
		return
	}
	line, err := json.Marshal(row)
	if err != nil {
		t.Fatal(err)
	}
	chaosMu.Lock()
	defer chaosMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		t.Fatal(err)
	}
}
