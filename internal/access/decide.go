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

package access

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	authorizationv1 "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/rest"
)

// Bounds of a decider's caches: the decisions within their TTL (as many as k8s.io/apiserver's
// webhook authorizer keeps), and the last answers kept for outages. Callers beyond them are
// asked about again, or get 503 during an outage, as without a grace.
const (
	cachedDecisions    = 8192
	lastKnownDecisions = 16384
)

// uncached turns off the cache of k8s.io/apiserver's webhook authorizer, which keys on the
// whole review, the user's credential id included: the decider caches instead. The answers it
// still stores have expired when stored; it holds at most 8192 of them, dropped as it goes.
const uncached = -time.Nanosecond

// decider answers SubjectAccessReviews through a client of its own, with caches of its own:
// the decisions within their TTL (Options.AllowCacheTTL and DenyCacheTTL), and the last
// answers for outages (Options.OutageGrace). Both key on the caller's identity, not on the
// token it came with (see attributesKey), so that fresh tokens of one ServiceAccount share
// its decisions. The review sent to the API server carries the full user.
type decider struct {
	authz             authorizer.Authorizer // k8s.io/apiserver's webhook authorizer, uncached
	cache             *utilcache.LRUExpireCache
	known             *utilcache.LRUExpireCache // nil without a grace
	allowTTL, denyTTL time.Duration
	grace             time.Duration
	// slots, when set, bound the reviews in flight.
	slots   chan struct{}
	metrics *metrics
}

// newDecider returns a decider sending its reviews with cfg; inFlight > 0 bounds how many it
// sends at once.
func newDecider(cfg *rest.Config, opts Options, m *metrics, inFlight int) (*decider, error) {
	client, err := authorizationv1.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("subject access review client: %w", err)
	}
	authz, err := authorizerfactory.DelegatingAuthorizerConfig{
		SubjectAccessReviewClient: client,
		AllowCacheTTL:             uncached,
		DenyCacheTTL:              uncached,
		WebhookRetryBackoff:       &retryBackoff,
	}.New()
	if err != nil {
		return nil, fmt.Errorf("authorizer: %w", err)
	}
	d := &decider{authz: authz, cache: utilcache.NewLRUExpireCache(cachedDecisions),
		allowTTL: opts.AllowCacheTTL, denyTTL: opts.DenyCacheTTL, grace: opts.OutageGrace, metrics: m}
	if opts.OutageGrace > 0 {
		d.known = utilcache.NewLRUExpireCache(lastKnownDecisions)
	}
	if inFlight > 0 {
		d.slots = make(chan struct{}, inFlight)
	}
	return d, nil
}

// decision is a SubjectAccessReview's answer.
type decision struct {
	decision authorizer.Decision
	reason   string
}

// authorize answers a from the cache, else asks the API server; while it cannot be asked, the
// last answer it gave for a stands in, if one is kept.
func (d *decider) authorize(ctx context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	key := attributesKey(a)
	if v, ok := d.cache.Get(key); ok {
		d.metrics.cachedDecision(true)
		answer := v.(decision)
		return answer.decision, answer.reason, nil
	}
	d.metrics.cachedDecision(false)
	if d.slots != nil {
		select {
		case d.slots <- struct{}{}:
			defer func() { <-d.slots }()
		case <-ctx.Done():
			return authorizer.DecisionNoOpinion, "", ctx.Err()
		}
	}
	answer, reason, err := d.authz.Authorize(ctx, a)
	switch {
	case err == nil:
		ttl := d.denyTTL
		if answer == authorizer.DecisionAllow {
			ttl = d.allowTTL
		}
		d.cache.Add(key, decision{answer, reason}, ttl)
		if d.known != nil {
			d.known.Add(key, decision{answer, reason}, ttl+d.grace)
		}
	case d.known == nil:
	case outage(err):
		if v, ok := d.known.Get(key); ok {
			d.metrics.outageAnswer(stepAuthorization)
			last := v.(decision)
			return last.decision, last.reason, nil
		}
	default:
		d.known.Remove(key) // an answer, if not a decision: the last one no longer holds
	}
	return answer, reason, err
}

// attributesKey identifies a request's attributes as a SubjectAccessReview does: the user
// (name, UID, groups, extra) and what is asked; but of the user's extra, not the credential
// id (user.CredentialIDKey, authentication.kubernetes.io/credential-id), which the API server
// sets per token (a bound ServiceAccount token's ID). With it, each fresh token of one
// ServiceAccount would be a caller of its own, and a caller minting tokens would defeat the
// caches and send a review per request.
//
// Leaving it out is safe: RBAC decides on the user's name, groups and UID, never on extra,
// let alone on the credential id; the token itself is reviewed on its own (TokenReviews are
// keyed by token), so a revoked token is refused whatever decisions its identity has. Only an
// authorization webhook of the cluster that decides on a credential id would see its answer
// reused for other tokens of the same user within the cache TTL. The review sent to the API
// server still carries the full user, credential id included, for its audit log.
func attributesKey(a authorizer.Attributes) string {
	u := a.GetUser()
	var (
		name, uid string
		groups    []string
		extra     map[string][]string
		stack     [8]string
		keys      = stack[:0] // of extra, sorted, the credential id left out
	)
	if u != nil {
		name, uid, groups, extra = u.GetName(), u.GetUID(), u.GetGroups(), u.GetExtra()
	}
	fields := [...]string{a.GetVerb(), a.GetNamespace(), a.GetAPIGroup(), a.GetAPIVersion(), a.GetResource(), a.GetSubresource(), a.GetName(), a.GetPath()}
	// The size first, so that the key is one allocation: a length prefix of up to 3 digits
	// and a separator per field.
	const prefix = 4
	size := 2*prefix + len(name) + len(uid) + 2*prefix + 1
	for _, g := range groups {
		size += prefix + len(g)
	}
	for k, vs := range extra {
		if k == user.CredentialIDKey {
			continue
		}
		keys = append(keys, k)
		size += 2*prefix + len(k)
		for _, v := range vs {
			size += prefix + len(v)
		}
	}
	for _, f := range fields {
		size += prefix + len(f)
	}
	slices.Sort(keys)

	var b strings.Builder
	b.Grow(size)
	var num [20]byte
	count := func(n int) {
		b.Write(strconv.AppendInt(num[:0], int64(n), 10))
		b.WriteByte(':')
	}
	field := func(s string) {
		count(len(s))
		b.WriteString(s)
	}
	field(name)
	field(uid)
	count(len(groups))
	for _, g := range groups {
		field(g)
	}
	count(len(keys))
	for _, k := range keys {
		field(k)
		count(len(extra[k]))
		for _, v := range extra[k] {
			field(v)
		}
	}
	if a.IsResourceRequest() {
		b.WriteByte('r')
	} else {
		b.WriteByte('n')
	}
	for _, f := range fields {
		field(f)
	}
	return b.String()
}
