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

package gateway_test

import (
	"testing"

	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/testutil"
)

// The readiness gauges, which the dashboard and the alerts read, follow the routing table.
func TestReadinessGauges(t *testing.T) {
	down := provider("team", "down", "http://127.0.0.1:1")
	down.Ready = false
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "up", "http://127.0.0.1:1"), down},
		Entities: []routing.EntitySpec{
			entity("team", "llama", backend("team", "up", served), backend("team", "down", served)),
			entity("team", "orphan", backend("team", "down", served)),
		},
	}, gateway.Options{})

	for _, tc := range []struct {
		metric string
		labels map[string]string
		want   float64
	}{
		{"infergate_gateway_provider_ready", map[string]string{"workspace": "team", "provider": "up"}, 1},
		{"infergate_gateway_provider_ready", map[string]string{"workspace": "team", "provider": "down"}, 0},
		{"infergate_gateway_entity_ready_providers", map[string]string{"workspace": "team", "entity": "llama"}, 1},
		{"infergate_gateway_entity_ready_providers", map[string]string{"workspace": "team", "entity": "orphan"}, 0},
		{"infergate_gateway_routable_entities", nil, 1},
		{"infergate_gateway_streams_open", map[string]string{"provider": "up"}, 0},
	} {
		if n := testutil.MetricCount(t, g.reg, tc.metric, tc.labels); n != 1 {
			t.Errorf("%s%v: %d series, want 1", tc.metric, tc.labels, n)
			continue
		}
		if got := counter(t, g.reg, tc.metric, tc.labels); got != tc.want {
			t.Errorf("%s%v = %v, want %v", tc.metric, tc.labels, got, tc.want)
		}
	}
}
