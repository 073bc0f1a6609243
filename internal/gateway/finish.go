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

// The outcome of a proxied request: health, metrics, budgets, queue, trace and access log.

package gateway

import "time"

// finish records the outcome of a proxied request once its response is over.
func (g *Gateway) finish(pr *proxyRequest) {
	now := g.opts.Now()
	if pr.began {
		pr.current.Health.End()
		pr.began = false
	}
	if pr.streaming {
		pr.current.Health.StreamEnd()
		pr.streaming = false
	}
	if !pr.firstEvent.IsZero() {
		pr.current.Health.ObserveStream(now, pr.firstEvent.Sub(pr.sent), pr.timePerToken(now))
	}
	ws, entity, provider, target := pr.rt.workspace, "", "", ""
	if pr.entity != nil {
		entity = pr.entity.Name
	}
	if pr.current != nil {
		provider = pr.current.Name
	}
	if pr.target != nil {
		target = pr.target.Entity.ID
	}
	status := pr.status
	if status == 0 {
		status = 499
	}
	route := pr.rt.kind.String()
	m := g.metrics
	m.requests.WithLabelValues(ws, entity, provider, route, codeLabel(status)).Inc()
	if target != "" {
		m.targetRequests.WithLabelValues(ws, entity, target, codeLabel(status)).Inc()
	}
	m.duration.WithLabelValues(ws, entity, provider, route).Observe(now.Sub(pr.start).Seconds())
	if pr.ttfb > 0 {
		m.ttfb.WithLabelValues(ws, entity, provider, route).Observe(pr.ttfb.Seconds())
	}
	if !pr.firstEvent.IsZero() && entity != "" {
		m.ttft.WithLabelValues(ws, entity, provider).Observe(pr.firstEvent.Sub(pr.start).Seconds())
	}
	g.finishBudget(pr)
	g.released(pr)
	if pr.usage.seen && entity != "" {
		m.promptTokens.WithLabelValues(ws, entity, provider).Add(float64(pr.usage.prompt))
		m.completionTokens.WithLabelValues(ws, entity, provider).Add(float64(pr.usage.completion))
	}
	if pr.attemptSpan != nil {
		reason := ""
		if status >= 500 || status == 499 {
			reason = codeLabel(status)
		}
		pr.endAttempt(reason, pr.status)
	}
	if pr.span != nil {
		pr.endRequestSpan(status)
	}
	if g.opts.AccessLog {
		var ttft time.Duration
		if !pr.firstEvent.IsZero() {
			ttft = pr.firstEvent.Sub(pr.start)
		}
		g.logAccess(pr.in, pr.start, accessEntry{requestID: pr.requestID, workspace: pr.rt.workspace, entity: entity, provider: provider, target: target,
			status: status, attempts: pr.attempts, ttft: ttft, usage: &pr.usage})
	}
}

// timePerToken is a stream's time per output token after the first: by the usage it reported,
// else by its data events (most servers send a token per event). 0 with a single token.
func (pr *proxyRequest) timePerToken(end time.Time) time.Duration {
	tokens := pr.events
	if pr.usage.seen && pr.usage.completion > 0 {
		tokens = pr.usage.completion
	}
	if tokens < 2 {
		return 0
	}
	return end.Sub(pr.firstEvent) / time.Duration(tokens-1)
}
