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
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"slices"
	"strconv"
	"strings"
	"time"

	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// Bounds of the last known answers kept for outages: callers beyond them fall back to 503
// during an outage, as without a grace.
const (
	lastKnownTokens    = 4096
	lastKnownDecisions = 16384
)

// lastKnown keeps the API server's latest answers, for use while it cannot be asked: a
// caller's token (keyed by an HMAC, never the token) and their decisions stay usable for
// their cache TTL plus the outage grace after the API server last gave them. Answers are
// recorded only when the API server was really asked, never on cache hits, so that the
// request path pays nothing for them.
type lastKnown struct {
	grace     time.Duration
	key       []byte // of the token HMAC, random per process
	tokens    *utilcache.LRUExpireCache
	decisions *utilcache.LRUExpireCache
}

func newLastKnown(grace time.Duration) *lastKnown {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &lastKnown{grace: grace, key: key,
		tokens: utilcache.NewLRUExpireCache(lastKnownTokens), decisions: utilcache.NewLRUExpireCache(lastKnownDecisions)}
}

// tokenKey identifies a token and the audiences it was reviewed for.
func (l *lastKnown) tokenKey(ctx context.Context, token string) string {
	mac := hmac.New(sha256.New, l.key)
	mac.Write([]byte(token))
	if auds, ok := authenticator.AudiencesFrom(ctx); ok {
		for _, a := range auds {
			mac.Write([]byte{0})
			mac.Write([]byte(a))
		}
	}
	return string(mac.Sum(nil))
}

// outageTokens is the token authenticator below the token cache: it asks the API server
// (next) on each cache miss, records what it answered, and while it cannot be asked answers
// with the last answer for the token, if there is one.
type outageTokens struct {
	next    authenticator.Token
	known   *lastKnown
	ttl     time.Duration // of the token cache above
	onStale func()
}

func (o *outageTokens) AuthenticateToken(ctx context.Context, token string) (*authenticator.Response, bool, error) {
	resp, ok, err := o.next.AuthenticateToken(ctx, token)
	key := o.known.tokenKey(ctx, token)
	switch {
	case err == nil && ok:
		o.known.tokens.Add(key, resp, o.ttl+o.known.grace)
	case outage(err):
		if last, found := o.known.tokens.Get(key); found {
			o.onStale()
			return last.(*authenticator.Response), true, nil
		}
	default:
		// Refused now, with or without an error (a deleted ServiceAccount's token comes back
		// with status.error set), or the review itself was refused: a revoked token must not
		// come back in an outage.
		o.known.tokens.Remove(key)
	}
	return resp, ok, err
}

// decision is a SubjectAccessReview's answer.
type decision struct {
	decision authorizer.Decision
	reason   string
}

// record keeps the answer the API server just gave for a, for its TTL plus the grace.
func (l *lastKnown) record(a authorizer.Attributes, d authorizer.Decision, reason string, ttl time.Duration) {
	l.decisions.Add(attributesKey(a), decision{d, reason}, ttl+l.grace)
}

// forget drops the last answer for a: the API server has answered since with an error.
func (l *lastKnown) forget(a authorizer.Attributes) { l.decisions.Remove(attributesKey(a)) }

// last returns the last answer the API server gave for a, if it is still kept.
func (l *lastKnown) last(a authorizer.Attributes) (decision, bool) {
	v, ok := l.decisions.Get(attributesKey(a))
	if !ok {
		return decision{}, false
	}
	return v.(decision), true
}

// attributesKey identifies a request's attributes as a SubjectAccessReview does: the user
// (name, UID, groups, extra) and what is asked.
func attributesKey(a authorizer.Attributes) string {
	var b strings.Builder
	field := func(s string) {
		b.WriteString(strconv.Itoa(len(s)))
		b.WriteByte(':')
		b.WriteString(s)
	}
	if u := a.GetUser(); u != nil {
		field(u.GetName())
		field(u.GetUID())
		field(strconv.Itoa(len(u.GetGroups())))
		for _, g := range u.GetGroups() {
			field(g)
		}
		extra := u.GetExtra()
		keys := make([]string, 0, len(extra))
		for k := range extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			field(k)
			field(strconv.Itoa(len(extra[k])))
			for _, v := range extra[k] {
				field(v)
			}
		}
	}
	field(strconv.FormatBool(a.IsResourceRequest()))
	for _, s := range []string{a.GetVerb(), a.GetNamespace(), a.GetAPIGroup(), a.GetAPIVersion(), a.GetResource(), a.GetSubresource(), a.GetName(), a.GetPath()} {
		field(s)
	}
	return b.String()
}
