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

	"github.com/infergate/infergate/internal/routing"
)

// Reasons to fall back to the next target, besides those of failed attempts.
const (
	reasonUnroutable    = "unroutable"     // no provider of the target can be tried
	reasonSaturated     = "saturated"      // every provider of the target is full
	reasonContextLength = "context_length" // the provider answered that the prompt is too long
	reasonStall         = "stall"          // a stream's first bytes did not come in time
)

// planTargets orders the targets of the virtual model pr.entity for this request (takeTarget
// then chooses among them). Requests for other entities are served by the entity itself.
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
	pr.useTarget(0)
	return nil
}

// takeTarget sends a virtual model's request to the first target of its plan that takes it at
// once: its providers are not all ejected, and its pool's queue dispatches the request's
// class now (a free slot, nothing of its class or a higher one waiting there, a Sheddable
// request leaving the reserve alone). It returns false when none does: the request then waits
// in the queue of the first target whose providers are not all ejected (or of the first), and
// hands over no further until an attempt there fails.
func (g *Gateway) takeTarget(pr *proxyRequest, now time.Time) bool {
	e := pr.entity
	var why [routing.MaxTargets]string
	wait := -1
	for i := range pr.plan {
		t := e.Targets[pr.plan[i]].Entity
		if allEjected(t, now) {
			why[i] = reasonUnroutable
			continue
		}
		q := g.pools.Queue(t.Pool)
		if q.TryAdmit(&pr.ticket, g.room(t, now), now) {
			pr.queue = q
			g.handedOver(pr, why[:i])
			pr.useTarget(i)
			return true
		}
		why[i] = reasonSaturated
		if wait < 0 {
			wait = i
		}
	}
	wait = max(wait, 0)
	g.handedOver(pr, why[:wait])
	pr.useTarget(wait)
	return false
}

// handedOver counts the targets of the plan a request passed over, and why.
func (g *Gateway) handedOver(pr *proxyRequest, why []string) {
	for i, reason := range why {
		g.metrics.fellBack(pr.label, pr.entity.Name, pr.entity.Targets[pr.plan[i]].Entity.ID, reason)
	}
}

// targetKey is the key that draws the request's target: the caller's or the conversation's
// (conversationKey; for a completion prompt, its prefix key) when the virtual model keeps them
// on one target, else a random one.
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
		if pr.object {
			if k, ok := conversationKey(pr.body.b, pr.members); ok {
				return k
			}
		}
		if k, ok := routing.PrefixKey(pr.blocks); ok {
			return k // a completion prompt: its first KiB
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

// fallBack moves the request on to the next target of its plan whose providers are not all
// ejected and whose pool's queue dispatches it at once, counting why it left each one it
// passes; the last target's queue holds it as any request (wait), which may refuse it. The
// request's place moves with it from pool to pool, so that a hand-over is no way past the
// priority and fair share of the pool it goes to. False when no target is left.
func (g *Gateway) fallBack(pr *proxyRequest, now time.Time, reason string) (bool, *apiError) {
	for pr.target != nil && pr.step+1 < len(pr.plan) {
		g.metrics.fellBack(pr.label, pr.entity.Name, pr.target.Entity.ID, reason)
		pr.useTarget(pr.step + 1)
		last := pr.step == len(pr.plan)-1
		if allEjected(pr.serving, now) && !last {
			reason = reasonUnroutable
			continue
		}
		q := g.pools.Queue(pr.serving.Pool)
		if q == pr.queue {
			return true, nil // the same providers' pool
		}
		g.leave(pr)
		if q.TryAdmit(&pr.ticket, g.room(pr.serving, now), now) {
			pr.queue = q
			return true, nil
		}
		if last {
			return true, g.wait(pr, now)
		}
		reason = reasonSaturated
	}
	return false, nil
}

// fallbackLeft tells whether a target remains after the current one.
func (pr *proxyRequest) fallbackLeft() bool {
	return pr.target != nil && pr.step+1 < len(pr.plan)
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

// full tells whether provider p's model server has no free slot, by its fresh report; a
// server whose capacity is not known is never full.
func full(p *routing.Provider, now time.Time) bool {
	s := p.Health.Signals(now, p.StaleAfter())
	return s.Reported && s.Capacity > 0 && s.Free() == 0
}

// roomier keeps a virtual model's request, while a target is left to fall back to, off a
// provider whose server is full: it returns idx when that provider has room, else the untried
// provider of e with the most free slots that is not ejected, or -1 when none has any. The
// picker would let the request queue at a server that holds its prompt; with a fallback left,
// the fallback is the better wait.
func roomier(e *routing.Entity, idx int, tried uint64, now time.Time) int {
	if !full(e.Backends[idx].Provider, now) {
		return idx
	}
	best, most := -1, int64(0)
	for i := range e.Backends {
		p := e.Backends[i].Provider
		if i == idx || tried&(1<<i) != 0 || p.Health.Ejected(now) {
			continue
		}
		s := p.Health.Signals(now, p.StaleAfter())
		free := s.Free()
		if !s.Reported || s.Capacity == 0 {
			free = 1 // not known to be full
		}
		if free > most {
			best, most = i, free
		}
	}
	return best
}
