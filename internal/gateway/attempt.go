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
	"strconv"
	"time"

	"github.com/infergate/infergate/internal/routing"
)

// RoundTrip sends one request upstream, trying up to MaxAttempts providers, since nothing
// has reached the client yet: a connection failure or an answer of 429, 502, 503 or 504 moves
// on to another provider of the entity, and, for a virtual model, to the next target once
// its own have been tried, or at once when the provider answers that the prompt exceeds the
// model's context or a stream stalls before its first bytes (see target.go).
func (g *Gateway) RoundTrip(out *http.Request) (*http.Response, error) {
	pr := fromContext(out.Context())
	var pristine http.Header
	if pr.serving != nil && pr.replayable && g.opts.MaxAttempts > 1 && (len(pr.serving.Backends) > 1 || len(pr.plan) > 1) {
		pristine = out.Header.Clone()
	}
	for {
		now := g.opts.Now()
		p := pr.provider
		var served []byte
		if e := pr.serving; e != nil {
			idx, choice := e.Pick(now, pr.tried, pr.blocks)
			if choice == routing.NoBackend || (choice == routing.AllEjected && pr.fallbackLeft()) {
				ok, apiErr := g.fallBack(pr, now, reasonUnroutable)
				switch {
				case apiErr != nil:
					return nil, apiErr
				case ok:
					continue
				case choice == routing.NoBackend:
					return nil, errUpstreamUnreachable(pr.entity.ID)
				}
			}
			if pr.fallbackLeft() && choice != routing.AllEjected {
				if idx = roomier(e, idx, pr.tried, now); idx < 0 {
					if _, apiErr := g.fallBack(pr, now, reasonSaturated); apiErr != nil {
						return nil, apiErr
					}
					continue
				}
			}
			g.metrics.picked(e.Balancing, choice)
			pr.tried |= 1 << idx
			pr.backend = &e.Backends[idx]
			p, served = pr.backend.Provider, pr.backend.ServedModelJSON
			// The server is about to read the prompt: it will probably hold its blocks.
			p.Prefixes.Add(pr.blocks)
		}
		pr.current, pr.timeouts = p, p.Timeouts.WithDefaults(g.opts.Timeouts)
		req := out
		if pr.attempts > 0 {
			r2 := *out
			r2.Header = pristine.Clone()
			req = &r2
		}
		g.prepare(req, pr, p, served)
		pr.attempts++
		if g.tracer != nil {
			g.startAttempt(pr, req, p, served)
		}
		req = pr.armStall(req)
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
				pr.disarmStall()
				return nil, err // the client went away
			}
			reason, safe = failureOf(err)
		case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusServiceUnavailable:
			reason, safe = codeLabel(resp.StatusCode), true
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		case resp.StatusCode == http.StatusBadGateway, resp.StatusCode == http.StatusGatewayTimeout:
			reason = codeLabel(resp.StatusCode)
			retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), now)
		case pr.fallbackLeft() && mayBeContextLength(resp.StatusCode):
			if pr.contextTooLong(resp) {
				reason = reasonContextLength
			}
		case pr.fallbackLeft() && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden):
			// The provider refused the gateway's key: its problem, not the client's; another
			// target may take the request.
			reason, safe = codeLabel(resp.StatusCode), true
		}
		if reason == "" && pr.serving != nil {
			if err = pr.awaitFirstBytes(resp); err != nil {
				if pr.ctx.Err() != nil {
					pr.disarmStall()
					return nil, err // the client went away, or the stream idle timeout ended the request
				}
				resp = nil
				reason, safe = failureOf(err)
			}
		}
		if pr.disarmStall() {
			reason, safe = reasonStall, false
		}
		if pr.serving == nil {
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
		if retryAfter > 0 && (pr.retryAfter == 0 || retryAfter < pr.retryAfter) {
			pr.retryAfter = retryAfter
		}
		// A prompt too long for the model, or a stream slow to start, says nothing of the
		// provider's health.
		if reason != reasonContextLength && reason != reasonStall {
			if d := p.Health.Failed(now, retryAfter, g.opts.Policy); d > 0 {
				g.metrics.ejections.WithLabelValues(p.Workspace, p.Name).Inc()
				g.log.V(1).Info("provider ejected", "provider", p.ID, "for", d.String(), "reason", reason, "requestID", pr.requestID)
			}
		}
		next := g.nextStep(pr, reason, safe)
		if next == stepAnswer {
			pr.notRun = safe && resp == nil
			pr.spanRetryAfter(resp)
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
		}
		p.Health.End()
		pr.began = false
		if next == stepRetry {
			g.metrics.retries.WithLabelValues(p.Workspace, pr.entity.Name, p.Name, reason).Inc()
			g.log.V(1).Info("retrying on another provider", "provider", p.ID, "reason", reason, "requestID", pr.requestID)
			continue
		}
		g.log.V(1).Info("falling back to the next target", "provider", p.ID, "reason", reason, "requestID", pr.requestID)
		if _, apiErr := g.fallBack(pr, g.opts.Now(), reason); apiErr != nil {
			return nil, apiErr
		}
	}
}

// What follows a failed attempt.
const (
	stepAnswer   = iota // the client gets this attempt's answer
	stepRetry           // another provider of the same target
	stepFallBack        // the next target
)

// nextStep decides what follows an attempt that failed for reason. A failure is retried when
// the request provably did not run (safe), when the serving entity's retryOn allows it, or
// when it is a reason to fall back (context length, stall), and only while the body can be
// sent again and attempts are left. It goes to another provider of the same target while
// one is left, unless it is the prompt or the target as a whole that failed, and never on the
// last attempt while a target is left to fall back to.
func (g *Gateway) nextStep(pr *proxyRequest, reason string, safe bool) int {
	fallback := reason == reasonContextLength || reason == reasonStall
	retryable := safe || fallback || pr.serving.RetryOn&retryCondition(reason) != 0
	if !retryable || !pr.replayable || pr.attempts >= g.opts.MaxAttempts {
		return stepAnswer
	}
	left := pr.fallbackLeft()
	untried := bits.OnesCount64(pr.tried) < len(pr.serving.Backends)
	switch {
	case !fallback && untried && (!left || pr.attempts+1 < g.opts.MaxAttempts):
		return stepRetry
	case left:
		return stepFallBack
	}
	return stepAnswer
}

// spanRetryAfter gives a 429 or 503 answer that ends a virtual model's request the shortest
// Retry-After any of its attempts was given: when the first of its targets may take it again.
// Other entities pass their last provider's on.
func (pr *proxyRequest) spanRetryAfter(resp *http.Response) {
	if resp == nil || pr.target == nil || pr.retryAfter <= 0 || pr.attempts < 2 ||
		(resp.StatusCode != http.StatusTooManyRequests && resp.StatusCode != http.StatusServiceUnavailable) {
		return
	}
	resp.Header["Retry-After"] = []string{strconv.Itoa(int((pr.retryAfter + time.Second - 1) / time.Second))}
}
