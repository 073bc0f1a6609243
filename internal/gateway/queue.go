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

package gateway

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/routing"
)

// PriorityHeader sets a request's priority class: Critical, Standard or Sheddable. Any caller
// may lower its class below its entity's spec.priority; raising it needs the verb
// VerbPrioritize on the entity's modelentities/proxy.
const PriorityHeader = "X-Infergate-Priority"

// VerbPrioritize is the RBAC verb that lets a caller raise its requests' class with
// PriorityHeader.
const VerbPrioritize = "prioritize"

// hold admits an entity's request to the queue of its pool of providers: it goes at once when
// nothing of its class or a higher one waits and a provider has a free slot (or the pool's
// capacity is not known), else it waits for one, in the order of package flow, for at most its
// entity's queue time. A virtual model's request goes at once to the first target of its plan
// whose pool takes it so (takeTarget), and waits only when none does.
func (g *Gateway) hold(pr *proxyRequest, table *routing.Table) *apiError {
	class, apiErr := g.classOf(pr)
	if apiErr != nil {
		return apiErr
	}
	ws := pr.rt.workspace
	t := &pr.ticket
	*t = flow.Ticket{Workspace: ws, Weight: table.ShareWeight(ws), Class: class}
	if pr.body != nil {
		t.Cost = float64(promptTokens(int64(len(pr.body.b))))
	}
	now := g.opts.Now()
	if pr.target != nil && g.takeTarget(pr, now) {
		return nil
	}
	return g.wait(pr, now)
}

// wait admits the request to the queue of the serving entity's pool: at once when it may go,
// else it waits there for a slot, for at most the entity's queue time.
func (g *Gateway) wait(pr *proxyRequest, now time.Time) *apiError {
	e, t, label := pr.serving, &pr.ticket, pr.label
	class := t.Class
	q := g.pools.Queue(e.Pool)
	wait, err := q.Admit(t, g.room(e, now), e.Queue.MaxLength, now)
	if err == nil {
		pr.queue = q
	}
	if err != nil || !wait {
		if err != nil {
			g.metrics.queued(label, class, "full", 0)
		}
		return queueError(err, pr.entity.ID, e.Queue, class)
	}
	g.metrics.waiting.WithLabelValues(label, class.String()).Inc()
	q.Serve(func() flow.Room { return g.room(e, g.opts.Now()) })
	err = q.Wait(pr.in.Context(), t, e.Queue.MaxTime)
	g.metrics.waiting.WithLabelValues(label, class.String()).Dec()
	waited := g.opts.Now().Sub(now)
	switch {
	case err == nil:
		g.metrics.queued(label, class, "dispatched", waited)
		return nil
	case errors.Is(err, flow.ErrShed):
		g.metrics.queued(label, class, "shed", waited)
	case errors.Is(err, flow.ErrTimeout):
		g.metrics.queued(label, class, "timeout", waited)
	default:
		g.metrics.queued(label, class, "left", waited)
	}
	pr.queue = nil
	return queueError(err, pr.entity.ID, e.Queue, class)
}

// room is what the providers of e can take now: the free slots of those that are not ejected,
// by their model servers' reports (capacity less load, none while the KV cache is full). While
// a provider's report is stale, its capacity as last learned less this replica's requests in
// flight. A provider whose capacity is not known (no metrics, or a server never seen full)
// makes the pool's room unbounded: the gateway queues only what it knows would queue upstream.
func (g *Gateway) room(e *routing.Entity, now time.Time) flow.Room {
	var r flow.Room
	for i := range e.Backends {
		p := e.Backends[i].Provider
		if p.Health.Ejected(now) {
			continue
		}
		s := p.Health.Signals(now, p.StaleAfter())
		if !s.Reported {
			// A late read must not release the queue onto the servers at once.
			s.Capacity = p.Health.Capacity()
		}
		if s.Capacity == 0 {
			return flow.Room{Free: flow.Unbounded}
		}
		r.Capacity += int(s.Capacity)
		r.Free += int(s.Free())
	}
	if r.Capacity == 0 {
		// Every provider is ejected: the attempt loop answers.
		return flow.Room{Free: flow.Unbounded}
	}
	return r
}

// classOf is the request's class: its entity's, or what PriorityHeader asks, when the caller
// may.
func (g *Gateway) classOf(pr *proxyRequest) (flow.Class, *apiError) {
	c := pr.entity.Priority
	v := pr.in.Header[PriorityHeader]
	if len(v) == 0 {
		return c, nil
	}
	want, ok := flow.ParseClass(v[0])
	if !ok || len(v) > 1 {
		return c, errInvalidPriority()
	}
	if want.Above(c) {
		if e := g.authorize(pr.in, pr.rt.workspace, VerbPrioritize, resourceModelEntities, subresourceProxy, pr.entity.Name); e != nil {
			return c, e
		}
	}
	return want, nil
}

// leave gives up the request's place in its pool before it has been served there, for another
// pool: the slot it was dispatched to, and the tokens it was charged.
func (g *Gateway) leave(pr *proxyRequest) {
	q := pr.queue
	if q == nil {
		return
	}
	pr.queue = nil
	t := &pr.ticket
	q.Started(t)
	q.Charge(t, -t.Cost)
	q.Wake()
}

// released ends the request's hold on its pool once it is over: its pending slot, if it never
// started upstream, and its tokens charged as served.
func (g *Gateway) released(pr *proxyRequest) {
	q := pr.queue
	if q == nil {
		return
	}
	pr.queue = nil
	t := &pr.ticket
	q.Started(t)
	served := t.Cost
	switch {
	case pr.usage.seen:
		served = float64(tokens(pr.usage.prompt) + tokens(pr.usage.completion))
	case pr.events > 0:
		served += float64(pr.events)
	case pr.notRun:
		served = 0
	}
	q.Charge(t, served-t.Cost)
	q.Wake()
}

// queueError answers a request for entity id whose wait in a queue bounded by q ended in err.
func queueError(err error, id string, q routing.Queue, c flow.Class) *apiError {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flow.ErrFull):
		return errQueueFull(id, q.MaxLength)
	case errors.Is(err, flow.ErrShed):
		return errShed(id)
	case errors.Is(err, flow.ErrTimeout):
		return errQueueTimeout(id, c, q.MaxTime)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errClientGone()
	}
	return errQueueFull(id, q.MaxLength)
}

func errInvalidPriority() *apiError {
	return &apiError{status: http.StatusBadRequest, code: "invalid_priority",
		detail: "Invalid " + PriorityHeader + " header: give one of Critical, Standard or Sheddable, once."}
}

func errQueueFull(entity string, length int) *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: "queue_full", typ: "requests", retryAfter: 1,
		detail: "Too Many Requests: every provider of " + entity + " is saturated and the gateway already holds " + strconv.Itoa(length) +
			" requests for them (spec.queue.maxLength), none of a lower class; retry shortly."}
}

func errShed(entity string) *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: "shed", typ: "requests", retryAfter: 1,
		detail: "Too Many Requests: every provider of " + entity + " is saturated, and a request of a higher class took this request's place in the gateway's full queue; retry shortly."}
}

func errQueueTimeout(entity string, c flow.Class, d time.Duration) *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: "queue_timeout", typ: "requests", retryAfter: max(1, int((d+time.Second-1)/time.Second)),
		detail: "Too Many Requests: every provider of " + entity + " stayed saturated for the " + d.String() +
			" this " + c.String() + " request may wait (spec.queue.maxTime); retry later."}
}

// errClientGone ends a request whose client left while it waited: nobody reads the answer.
func errClientGone() *apiError {
	return &apiError{status: 499, code: "client_closed_request", detail: "The client closed the request while it waited for capacity."}
}
