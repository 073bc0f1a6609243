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

// Virtual models: the entity a client names resolves to the targets that serve it (a split by
// weight, fallbacks by order), and each target to its providers.

package gateway

import (
	"math/rand/v2"
	"net"
	"time"

	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/routing"
)

// Reasons to fall back to the next target, besides those of failed attempts.
const (
	reasonUnroutable    = "unroutable"     // no provider of the target can be tried
	reasonSaturated     = "saturated"      // every provider of the target is full
	reasonContextLength = "context_length" // the provider answered that the prompt is too long
	reasonStall         = "stall"          // a stream's first bytes did not come in time
)

// planTargets orders the targets of the virtual model pr.entity for this request, and sends
// it to the first that can take it now: one whose providers are neither all ejected nor all
// saturated. When none can, the first of them takes it (its queue holds it, or its attempt
// fails and falls back). Requests for other entities are served by the entity itself.
func (g *Gateway) planTargets(pr *proxyRequest) *apiError {
	e := pr.entity
	if !e.Virtual() {
		pr.serving = e
		return nil
	}
	pr.plan = e.PlanTargets(pr.plan[:0], pr.targetKey(), pr.rt.trailing)
	if len(pr.plan) == 0 {
		for i := range e.Targets {
			if len(e.Targets[i].Entity.Backends) > 0 {
				return errPathNotAllowed(e, pr.rt.trailing) // no target serves this path
			}
		}
		return errNoReadyProvider(e.ID)
	}
	now := g.opts.Now()
	var why [routing.MaxTargets]string
	chosen := 0 // when none can take it now, the first does, later
	for i := range pr.plan {
		t := e.Targets[pr.plan[i]].Entity
		switch {
		case allEjected(t, now):
			why[i] = reasonUnroutable
		case saturated(g.room(t, now)):
			why[i] = reasonSaturated
		default:
			chosen = i
		}
		if why[i] == "" {
			break
		}
	}
	for i := range chosen {
		g.metrics.fellBack(pr.label, e.Name, e.Targets[pr.plan[i]].Entity.ID, why[i])
	}
	pr.useTarget(chosen)
	return nil
}

// targetKey is the key that draws the request's target: the caller's or the conversation's
// when the virtual model keeps them on one target, else a random one.
func (pr *proxyRequest) targetKey() uint64 {
	switch pr.entity.Affinity {
	case routing.AffinityCaller:
		if u := userFrom(pr.in.Context()); u != nil {
			return routing.KeyOf(u.GetName())
		}
		if host, _, err := net.SplitHostPort(pr.in.RemoteAddr); err == nil {
			return routing.KeyOf(host)
		}
	case routing.AffinityConversation:
		if k, ok := routing.PrefixKey(pr.blocks); ok {
			return k
		}
	}
	return rand.Uint64()
}

// useTarget sends the next attempts to the i-th target of the plan.
func (pr *proxyRequest) useTarget(i int) {
	pr.step = i
	pr.target = &pr.entity.Targets[pr.plan[i]]
	pr.serving = pr.target.Entity
	pr.tried = 0
}

// fallBack moves the request on to the next target of its plan that has a provider to try,
// counting why it left the current one; false when no target is left.
func (g *Gateway) fallBack(pr *proxyRequest, now time.Time, reason string) bool {
	for pr.target != nil && pr.step+1 < len(pr.plan) {
		g.metrics.fellBack(pr.label, pr.entity.Name, pr.target.Entity.ID, reason)
		pr.useTarget(pr.step + 1)
		if !allEjected(pr.serving, now) || pr.step == len(pr.plan)-1 {
			return true
		}
		reason = reasonUnroutable
	}
	return false
}

// fallbackLeft tells whether a target remains after the current one.
func (pr *proxyRequest) fallbackLeft() bool {
	return pr.target != nil && pr.step+1 < len(pr.plan)
}

// servedName is the model name the current attempt sends: the target's, when it sets one,
// else the backend's.
func (pr *proxyRequest) servedName() (quoted []byte, name string) {
	if t := pr.target; t != nil && t.ServedModelJSON != nil {
		return t.ServedModelJSON, t.ServedModel
	}
	return pr.backend.ServedModelJSON, pr.backend.ServedModel
}

// allEjected tells whether every provider of e is ejected now.
func allEjected(e *routing.Entity, now time.Time) bool {
	for i := range e.Backends {
		if !e.Backends[i].Provider.Health.Ejected(now) {
			return false
		}
	}
	return true
}

// saturated tells whether a pool's room is known and has no free slot.
func saturated(r flow.Room) bool { return r.Free != flow.Unbounded && r.Free <= 0 }
