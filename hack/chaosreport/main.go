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

// Command chaosreport prints the rows that the fault and soak scenarios of `make chaos` wrote,
// one JSON object per line on its input, as a Markdown table.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/infergate/infergate/internal/testutil"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "chaosreport:", err)
		os.Exit(1)
	}
}

func run() error {
	var rows []testutil.ChaosRow
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var r testutil.ChaosRow
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("line %d: %w", len(rows)+1, err)
		}
		rows = append(rows, r)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("no scenario reported: did the tests run?")
	}
	slices.SortStableFunc(rows, func(a, b testutil.ChaosRow) int { return strings.Compare(a.Scenario, b.Scenario) })
	fmt.Println("| scenario | sent | succeeded | failed | figure |")
	fmt.Println("|---|---:|---:|---|---|")
	for _, r := range rows {
		failed := "0"
		if len(r.Failed) > 0 {
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(r.Failed)) {
				parts = append(parts, fmt.Sprintf("%d %s", r.Failed[k], k))
			}
			failed = strings.Join(parts, ", ")
		}
		fmt.Printf("| %s | %d | %d | %s | %s |\n", r.Scenario, r.Sent, r.Succeeded, failed, r.Figure)
	}
	return nil
}
