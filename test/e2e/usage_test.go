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

package e2e

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"
)

// usage is what a manager process holds at one moment.
type usage struct {
	at         time.Time
	rss        uint64 // bytes of resident memory
	fds        int    // open file descriptors
	goroutines int
}

func (u usage) String() string {
	return fmt.Sprintf("RSS %s, %d goroutines, %d fds", mib(u.rss), u.goroutines, u.fds)
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// usageOf samples m: resident memory and descriptors from /proc, goroutines from its metrics.
func usageOf(t *testing.T, m *manager) usage {
	t.Helper()
	u, err := sampleUsage(m)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func sampleUsage(m *manager) (usage, error) {
	p, err := procfs.NewProc(m.cmd.Process.Pid)
	if err != nil {
		return usage{}, err
	}
	stat, err := p.Stat()
	if err != nil {
		return usage{}, err
	}
	fds, err := p.FileDescriptorsLen()
	if err != nil {
		return usage{}, err
	}
	u := usage{at: time.Now(), rss: uint64(stat.ResidentMemory()), fds: fds}
	resp, err := http.Get(m.metrics + "/metrics")
	if err != nil {
		return usage{}, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return usage{}, err
	}
	g, ok := families["go_goroutines"]
	if !ok || len(g.GetMetric()) == 0 {
		return usage{}, errors.New("the manager's metrics have no go_goroutines")
	}
	u.goroutines = int(g.GetMetric()[0].GetGauge().GetValue())
	return u, nil
}

// growth is the least-squares slope of samples of one quantity, per hour, and as a share of
// their mean.
func growth(samples []usage, of func(usage) float64) (perHour, share float64) {
	n := float64(len(samples))
	if n < 2 {
		return 0, 0
	}
	var sx, sy, sxx, sxy float64
	t0 := samples[0].at
	for _, s := range samples {
		x, y := s.at.Sub(t0).Hours(), of(s)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	slope := (n*sxy - sx*sy) / (n*sxx - sx*sx)
	mean := sy / n
	if mean == 0 || math.IsNaN(slope) {
		return slope, 0
	}
	return slope, slope / mean
}

// percentile returns the p-th percentile (0 to 100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(p/100*float64(len(s))))-1)]
}

// latencies formats the median and 99th percentile of ds.
func latencies(ds []time.Duration) string {
	return fmt.Sprintf("p50 %s, p99 %s", percentile(ds, 50).Round(100*time.Microsecond), percentile(ds, 99).Round(100*time.Microsecond))
}
