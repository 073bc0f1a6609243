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
	"time"

	utilcache "k8s.io/apimachinery/pkg/util/cache"
	"k8s.io/apiserver/pkg/authentication/authenticator"
)

// lastKnownTokens bounds the last token answers kept for outages: callers beyond it fall
// back to 503 during an outage, as without a grace.
const lastKnownTokens = 4096

// lastKnown keeps the API server's latest answers about tokens, for use while it cannot be
// asked: a caller's token (keyed by an HMAC, never the token) stays usable for its cache TTL
// plus the outage grace after the API server last accepted it. Answers are recorded only when
// the API server was really asked, never on cache hits, so that the request path pays nothing
// for them. (The last decisions are kept by each decider.)
type lastKnown struct {
	grace  time.Duration
	key    []byte // of the token HMAC, random per process
	tokens *utilcache.LRUExpireCache
}

func newLastKnown(grace time.Duration) *lastKnown {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &lastKnown{grace: grace, key: key, tokens: utilcache.NewLRUExpireCache(lastKnownTokens)}
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
