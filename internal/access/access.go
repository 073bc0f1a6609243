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

// Package access decides who may call the gateway, the Kubernetes way: a caller's bearer token
// is checked with a TokenReview and each request with a SubjectAccessReview, both answered by
// the cluster's API server. It uses k8s.io/apiserver's delegating authenticator and authorizer,
// the machinery of kube-rbac-proxy and controller-runtime's secure metrics filter: token
// answers are cached for TokenCacheTTL by the authenticator's cache, allowed and denied
// decisions for AllowCacheTTL and DenyCacheTTL by this package's (see decider).
//
// Tokens are never logged, counted by value or kept: the token cache keys on an HMAC of the
// token, and decisions are keyed on the caller's identity (user name, UID, groups and extra
// attributes but the per-token credential id) and what is asked.
package access

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/authenticatorfactory"
	"k8s.io/apiserver/pkg/authentication/group"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	unionauth "k8s.io/apiserver/pkg/authentication/request/union"
	"k8s.io/apiserver/pkg/authentication/request/websocket"
	tokencache "k8s.io/apiserver/pkg/authentication/token/cache"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	webhooktoken "k8s.io/apiserver/plugin/pkg/authenticator/token/webhook"
	authenticationv1 "k8s.io/client-go/kubernetes/typed/authentication/v1"
	"k8s.io/client-go/rest"
)

// Defaults of Options.
const (
	DefaultTokenCacheTTL = time.Minute
	DefaultAllowCacheTTL = time.Minute
	DefaultDenyCacheTTL  = 10 * time.Second
	// DefaultOutageGrace is the manager's default of Options.OutageGrace (the zero Options
	// have none).
	DefaultOutageGrace = 5 * time.Minute
)

// reviewTimeout bounds one review request to the API server.
const reviewTimeout = 10 * time.Second

// retryBackoff is k8s.io/apiserver's default for delegated authentication and authorization
// (DefaultAuthWebhookRetryBackoff): about 4 s of retries on transient errors such as a 429 or
// a reset connection. A refused connection is not retried.
var retryBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 5}

// Options configure a Checker.
type Options struct {
	// Audiences, when set, are the audiences a token must be issued for, such as the audience
	// of a projected ServiceAccount token. Empty accepts tokens for the API server's own
	// audiences, such as those of `kubectl create token`.
	Audiences []string
	// TokenCacheTTL is how long the answer of a TokenReview is reused. Default 1m.
	TokenCacheTTL time.Duration
	// AllowCacheTTL is how long an allowed decision is reused: a removed RoleBinding takes
	// effect within it. Default 1m.
	AllowCacheTTL time.Duration
	// DenyCacheTTL is how long a denied decision is reused: a new RoleBinding takes effect
	// within it. Default 10s.
	DenyCacheTTL time.Duration
	// OutageGrace is how long past their cache TTL the API server's last answers for a token
	// and for a decision keep being used while it cannot be asked (unreachable, timing out,
	// overloaded), counted from when it gave them; 0: none, an outage gives errors once the
	// caches expire. Any other answer of the API server replaces the last one at once: a
	// token it refuses (also with status.error set, as for a deleted ServiceAccount's) or a
	// review it refuses is not accepted again in a later outage.
	OutageGrace time.Duration
	// Registerer receives the metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

// The manager reviews tokens and access for the gateway, and nothing more.
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Checker authenticates and authorizes gateway requests against the API server.
type Checker struct {
	authn     authenticator.Request
	audiences authenticator.Audiences
	metrics   *metrics
	// requests decides the requests; lists, the per-entity reviews of model lists, apart so
	// that they cannot crowd out the others (see AuthorizeListed).
	requests, lists *decider
}

// New returns a Checker that sends its reviews with cfg's credentials, which must allow
// creating tokenreviews (authentication.k8s.io) and subjectaccessreviews
// (authorization.k8s.io).
func New(cfg *rest.Config, opts Options) (*Checker, error) {
	if opts.TokenCacheTTL <= 0 {
		opts.TokenCacheTTL = DefaultTokenCacheTTL
	}
	if opts.AllowCacheTTL <= 0 {
		opts.AllowCacheTTL = DefaultAllowCacheTTL
	}
	if opts.DenyCacheTTL <= 0 {
		opts.DenyCacheTTL = DefaultDenyCacheTTL
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}

	var known *lastKnown
	if opts.OutageGrace > 0 {
		known = newLastKnown(opts.OutageGrace)
	}

	tokenReviews, err := authenticationv1.NewForConfig(reviewConfig(cfg, m, kindTokenReview, requestReviewQPS, requestReviewBurst))
	if err != nil {
		return nil, fmt.Errorf("token review client: %w", err)
	}
	// DelegatingAuthenticatorConfig's bearer token chain (TokenReview webhook, token cache),
	// with the last known answers between the two.
	authenticatorfactory.RegisterMetrics()
	webhook, err := webhooktoken.NewFromInterface(tokenReviews, opts.Audiences, retryBackoff, reviewTimeout, webhooktoken.AuthenticatorMetrics{
		RecordRequestTotal:   authenticatorfactory.RecordRequestTotal,
		RecordRequestLatency: authenticatorfactory.RecordRequestLatency,
	})
	if err != nil {
		return nil, fmt.Errorf("authenticator: %w", err)
	}
	var tokens authenticator.Token = webhook
	if known != nil {
		tokens = &outageTokens{next: webhook, known: known, ttl: opts.TokenCacheTTL, onStale: func() { m.outageAnswer(stepAuthentication) }}
	}
	cached := tokencache.New(tokens, false, opts.TokenCacheTTL, opts.TokenCacheTTL)
	authn := group.NewAuthenticatedGroupAdder(unionauth.New(bearertoken.New(cached), websocket.NewProtocolAuthenticator(cached)))

	requests, err := newDecider(reviewConfig(cfg, m, kindAccessReview, requestReviewQPS, requestReviewBurst), opts, m, 0)
	if err != nil {
		return nil, err
	}
	lists, err := newDecider(reviewConfig(cfg, m, kindAccessReview, listReviewQPS, listReviewBurst), opts, m, listReviewsInFlight)
	if err != nil {
		return nil, err
	}
	return &Checker{authn: authn, audiences: opts.Audiences, metrics: m, requests: requests, lists: lists}, nil
}

// Client-side rate limits of the reviews, each kind and lane with its own: those of requests
// high enough that they are not held back by the manager's controller limit.
const (
	requestReviewQPS, requestReviewBurst = 1000, 2000
	// The per-entity reviews of model lists have a lane of their own (AuthorizeListed), with
	// a lower rate and at most listReviewsInFlight at once, whatever the number of callers,
	// tokens or ServiceAccounts asking: a flood of model lists slows model lists down, never
	// the reviews of other requests. Their answers are cached by the caller's identity, as
	// all decisions are: a caller who lists again within the TTLs costs none.
	listReviewQPS, listReviewBurst = 100, 200
	listReviewsInFlight            = 32
)

// reviewConfig is cfg for one kind of review, with its own rate limit, and a transport that
// counts the reviews.
func reviewConfig(cfg *rest.Config, m *metrics, kind string, qps float32, burst int) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.QPS, c.Burst = qps, burst
	c.Timeout = reviewTimeout
	c.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &reviewTransport{next: rt, kind: kind, metrics: m}
	})
	return c
}

// Authenticate returns the user whose bearer token r carries. ok is false when r carries no
// token or one the API server refuses (expired, revoked, for another audience); err is set
// when the API server could not be asked, so that the caller can tell an outage from a refusal.
func (c *Checker) Authenticate(r *http.Request) (u user.Info, ok bool, err error) {
	if len(c.audiences) > 0 {
		r = r.WithContext(authenticator.WithAudiences(r.Context(), c.audiences))
	}
	resp, ok, err := c.authn.AuthenticateRequest(r)
	switch {
	case ok:
		c.metrics.decide(stepAuthentication, decisionAllowed)
		return resp.User, true, nil
	case err != nil && unavailable(err):
		c.metrics.decide(stepAuthentication, decisionError)
		return nil, false, fmt.Errorf("review the bearer token: %w", err)
	default:
		c.metrics.decide(stepAuthentication, decisionDenied)
		return nil, false, nil
	}
}

// Authorize reports whether a may be done. reason is the authorizer's explanation, often
// empty. err is set when the API server could not be asked: that is never an allow.
func (c *Checker) Authorize(ctx context.Context, a authorizer.Attributes) (allowed bool, reason string, err error) {
	return c.decided(c.requests.authorize(ctx, a))
}

// AuthorizeListed is Authorize for the reviews that a model list makes per entity: they have
// a lane of their own (client, rate limit, reviews in flight, caches), so that however many
// of them callers cause, the reviews of other requests neither wait behind them nor lose their
// cached decisions to them.
func (c *Checker) AuthorizeListed(ctx context.Context, a authorizer.Attributes) (allowed bool, reason string, err error) {
	return c.decided(c.lists.authorize(ctx, a))
}

// decided counts a decision and tells an allow from the rest.
func (c *Checker) decided(decision authorizer.Decision, reason string, err error) (bool, string, error) {
	switch {
	case err != nil:
		c.metrics.decide(stepAuthorization, decisionError)
		return false, reason, fmt.Errorf("review access: %w", err)
	case decision == authorizer.DecisionAllow:
		c.metrics.decide(stepAuthorization, decisionAllowed)
		return true, reason, nil
	default:
		c.metrics.decide(stepAuthorization, decisionDenied)
		return false, reason, nil
	}
}

// unavailable reports whether err says that the API server could not answer for a token or a
// request (an outage, or a refusal of the manager's own review: its credentials or rights),
// rather than that it refused a token. A refused token comes back as the plain error text of
// the review's status.
func unavailable(err error) bool {
	var apiStatus apierrors.APIStatus
	return outage(err) || someError(err, func(e error) bool { return errors.As(e, &apiStatus) })
}

// outage reports whether err says that the API server gave no answer: it could not be
// reached, timed out, or said it is overloaded (429, 5xx). Only then may its last answers
// stand in for a new one. Any other error is an answer, such as a refused token's status.error
// or a refusal of the manager's own review, and replaces the last one.
func outage(err error) bool {
	return someError(err, func(e error) bool {
		var (
			netErr    net.Error
			urlErr    *url.Error
			apiStatus apierrors.APIStatus
		)
		if errors.As(e, &apiStatus) {
			code := apiStatus.Status().Code
			return code == http.StatusTooManyRequests || code >= http.StatusInternalServerError
		}
		return errors.As(e, &netErr) || errors.As(e, &urlErr) ||
			errors.Is(e, context.DeadlineExceeded) || errors.Is(e, context.Canceled)
	})
}

// someError reports whether is holds for err or, when err is an aggregate, one of its errors.
func someError(err error, is func(error) bool) bool {
	var agg utilerrors.Aggregate
	if errors.As(err, &agg) {
		return slices.ContainsFunc(agg.Errors(), func(e error) bool { return someError(e, is) })
	}
	return err != nil && is(err)
}
