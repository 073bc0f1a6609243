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

// The attempt loop: pick a provider, send, classify a failure, retry or fall back.

package gateway

import (
	"io"
	"math/bits"
	"net/http"
	"time"

	"github.com/infergate/infergate/internal/routing"
)

// RoundTrip sends one request upstream, trying up to MaxAttempts providers of an entity:
// a connection failure or an answer of 429, 502, 503 or 504 moves on to another provider,
// since nothing has reached the client yet.
func (g *Gateway) RoundTrip(out *http.Request) (*http.Response, error) {
	pr := fromContext(out.Context())
	var pristine http.Header
	if pr.entity != nil && pr.replayable && len(pr.entity.Backends) > 1 && g.opts.MaxAttempts > 1 {
		pristine = out.Header.Clone()
	}
	for attempt := 0; ; attempt++ {
		now := g.opts.Now()
		p := pr.provider
		var served []byte
		if pr.entity != nil {
			idx, choice := pr.entity.Pick(now, pr.tried, pr.blocks)
			if choice == routing.NoBackend {
				return nil, errUpstreamUnreachable(pr.entity.ID)
			}
			g.metrics.picked(pr.entity.Balancing, choice)
			pr.tried |= 1 << idx
			pr.backend = &pr.entity.Backends[idx]
			p, served = pr.backend.Provider, pr.backend.ServedModelJSON
			// The server is about to read the prompt: it will probably hold its blocks.
			p.Prefixes.Add(pr.blocks)
		}
		pr.current, pr.timeouts = p, p.Timeouts.WithDefaults(g.opts.Timeouts)
		req := out
		if attempt > 0 {
			r2 := *out
			r2.Header = pristine.Clone()
			req = &r2
		}
		g.prepare(req, pr, p, served)
		pr.attempts++
		if g.tracer != nil {
			g.startAttempt(pr, req, p, served)
		}
		p.Health.Begin()
		pr.began, pr.sent = true, now
		if pr.queue != nil {
			pr.queue.Started(&pr.ticket) // the provider's load counts it now
		}
		resp, err := g.transportFor(pr.timeouts).RoundTrip(req)

		retryAfter := time.Duration(0)
		reason := ""
		safe := false // the request provably did not run upstream
		switch {
		case err != nil:
			if pr.in.Context().Err() != nil {
				return nil, err // the client went away
			}
			reason, safe = failureOf(err)
		case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusServiceUnavailable:
			reason, safe = codeLabel(resp.StatusCode), true
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		case resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusGatewayTimeout:
			reason = codeLabel(resp.StatusCode)
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		}
		if reason == "" && pr.entity != nil {
			if err = pr.awaitFirstBytes(resp); err != nil {
				if pr.ctx.Err() != nil {
					return nil, err // the client went away, or the stream idle timeout ended the request
				}
				resp = nil
				reason, safe = failureOf(err)
			}
		}
		if pr.entity == nil {
			// The provider route is a raw pass-through: one attempt, no ejections.
			return resp, err
		}
		if reason == "" {
			if resp.StatusCode < 500 {
				p.Health.Succeeded()
			}
			return resp, nil
		}
		if pr.attemptSpan != nil {
			code := 0
			if resp != nil {
				code = resp.StatusCode
			}
			pr.endAttempt(reason, code)
		}
		if d := p.Health.Failed(now, retryAfter, g.opts.Policy); d > 0 {
			g.metrics.ejections.WithLabelValues(p.Workspace, p.Name).Inc()
			g.log.V(1).Info("provider ejected", "provider", p.ID, "for", d.String(), "reason", reason, "requestID", pr.requestID)
		}
		canRetry := (safe || pr.entity.RetryOn&retryCondition(reason) != 0) &&
			pr.replayable && attempt+1 < g.opts.MaxAttempts && bits.OnesCount64(pr.tried) < len(pr.entity.Backends)
		if !canRetry {
			pr.notRun = safe && resp == nil
			return resp, err
		}
		g.metrics.retries.WithLabelValues(p.Workspace, pr.entity.Name, p.Name, reason).Inc()
		g.log.V(1).Info("retrying on another provider", "provider", p.ID, "reason", reason, "requestID", pr.requestID)
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		p.Health.End()
		pr.began = false
	}
}
