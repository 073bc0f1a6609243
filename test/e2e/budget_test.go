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
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"sigs.k8s.io/controller-runtime/pkg/client"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/redistest"
)

// Two manager replicas on one Redis: an InferenceBudget applied with kubectl holds across
// both, its change takes effect on both, and its status reports the usage.
func TestBudgetHoldsAcrossReplicasAndFollowsItsChanges(t *testing.T) {
	redis := redistest.Start(t)
	args := []string{"--leader-elect", "--leader-election-namespace", "infergate-system", "--budget-store", redis.URL(), "--budget-replicas", "2"}
	c := startCluster(t, args...)
	second := c.startManager(args...)
	up := newUpstream(t, "sim", "", served)
	c.apply(`
apiVersion: inference.infergate.dev/v1alpha1
kind: Provider
metadata: {name: sim, namespace: team}
spec: {url: ` + up.srv.URL + `}
---
apiVersion: inference.infergate.dev/v1alpha1
kind: ModelEntity
metadata: {name: llama, namespace: team}
spec: {servedModelName: ` + served + `}
`)
	replicas := []*manager{c.manager, second}
	c.routableOn(30*time.Second, "team", "llama", replicas...)

	// Start within a minute window, with room for the test.
	if s := time.Now().Second(); s > 30 {
		time.Sleep(time.Duration(61-s) * time.Second)
	}
	apply := func(limit int) {
		c.apply(fmt.Sprintf(`
apiVersion: inference.infergate.dev/v1alpha1
kind: InferenceBudget
metadata: {name: team-minute, namespace: team}
spec:
  limits: {requestsPerMinute: %d, tokensPerDay: 1000000}
  failureMode: Closed
`, limit))
	}
	apply(6)
	c.run("wait", "--for=condition=Ready", "-n", "team", "inferencebudget/team-minute", "--timeout=30s")
	// Requests alternate between the replicas until both refuse; each replica enforces the
	// budget once its limit shows in the headers.
	admitted := func(limit string) int {
		ok := 0
		refused := map[*manager]bool{}
		for i := 0; len(refused) < 2 && i < 100; i++ {
			m := replicas[i%2]
			var resp *http.Response
			_, err := c.openaiVia(m, "team").Chat.Completions.New(context.Background(), chat("llama"), option.WithResponseInto(&resp))
			var apiErr *openai.Error
			switch {
			case err == nil:
				ok++
			case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests:
				resp = apiErr.Response
				if resp.Header.Get("X-Ratelimit-Limit-Requests") == limit {
					refused[m] = true
				}
			default:
				t.Fatal(err)
			}
			if resp.Header.Get("X-Ratelimit-Limit-Requests") != limit {
				time.Sleep(50 * time.Millisecond) // this replica has not seen the budget (or its change) yet
			}
		}
		return ok
	}
	// Until a replica has the budget in its table, it admits without counting: the sum over
	// both is the limit at least, and the counted part exactly the limit.
	first := admitted("6")
	if first < 6 || first > 8 {
		t.Errorf("admitted %d requests for a limit of 6 across two replicas", first)
	}
	counted := func() int64 {
		var b inferencev1alpha1.InferenceBudget
		if err := c.k8s.Get(context.Background(), client.ObjectKey{Namespace: "team", Name: "team-minute"}, &b); err != nil {
			t.Fatal(err)
		}
		for _, u := range b.Status.Usage {
			if u.Limit == "requestsPerMinute" {
				return u.Used
			}
		}
		return -1
	}
	c.eventually(30*time.Second, func() error {
		if n := counted(); n != 6 {
			return fmt.Errorf("status usage of requestsPerMinute is %d, want 6", n)
		}
		return nil
	})

	// Raised to 10: both replicas follow, and admit 4 more between them.
	apply(10)
	if more := admitted("10"); more != 4 {
		t.Errorf("admitted %d more after raising the limit to 10, want 4", more)
	}
	out := c.run("get", "inferencebudgets", "-n", "team")
	if !strings.Contains(out, "team-minute") || !strings.Contains(out, quota.EnforcementStore) || !strings.Contains(out, "True") {
		t.Errorf("kubectl get inferencebudgets:\n%s", out)
	}
}
