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

// Command manager runs infergate: the controllers for ModelEntity, Provider and Deployment and
// the embedded OpenAI-compatible gateway, in one process.
package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/leaderelection"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	gatewayv1beta1 "sigs.k8s.io/gateway-api/apis/v1beta1"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/controllers"
	"github.com/infergate/infergate/internal/access"
	"github.com/infergate/infergate/internal/discovery"
	"github.com/infergate/infergate/internal/egress"
	"github.com/infergate/infergate/internal/election"
	"github.com/infergate/infergate/internal/flow"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/logging"
	"github.com/infergate/infergate/internal/quota"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/scrape"
	"github.com/infergate/infergate/internal/snapshot"
	"github.com/infergate/infergate/internal/tracing"
)

// Leader election needs a Lease in the manager's namespace, and events are recorded there.
// +kubebuilder:rbac:groups=coordination.k8s.io,namespace=infergate-system,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",namespace=infergate-system,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=events.k8s.io,namespace=infergate-system,resources=events,verbs=create;patch

type options struct {
	metricsAddr             string
	probeAddr               string
	gatewayAddr             string
	gatewayMaxBody          int64
	gatewayMaxAttempts      int
	gatewayBufferBytes      int64
	gatewayCallerBytes      int64
	gatewayBodyReadTimeout  time.Duration
	gatewayHeaderTimeout    time.Duration
	gatewayIdleTimeout      time.Duration
	gatewayMaxHeaderBytes   int
	gatewayAccessLog        bool
	gatewayShutdown         time.Duration
	gatewayShutdownDelay    time.Duration
	gatewayTimeouts         routing.Timeouts
	gatewayAuth             string
	gatewayAuthOptions      access.Options
	leaderElect             bool
	leaderElectionID        string
	leaderElectionNamespace string
	logLevel                string
	logFormat               string
	systemWorkspace         string
	secretLabelSelector     string
	egress                  egress.Options
	budgetStore             string
	budgetStoreCAFile       string
	budgetStoreTimeout      time.Duration
	budgetReplicas          int
	fairShareInterval       time.Duration
}

// budgetStorePasswordEnv names the environment variable with the budget store's password
// (from a Secret); it is never a flag, so that it shows in no process list.
const budgetStorePasswordEnv = "INFERGATE_BUDGET_STORE_PASSWORD"

func main() {
	if err := newCommand().ExecuteContext(ctrl.SetupSignalHandler()); err != nil {
		os.Exit(1)
	}
}

func newCommand() *cobra.Command {
	var o options
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "infergate: an OpenAI-compatible inference gateway driven by Kubernetes resources",
		Long: `manager runs the infergate controllers (ModelEntity, Provider, Deployment) and the embedded
gateway. It connects to the cluster named by --kubeconfig, $KUBECONFIG, the in-cluster service
account or ~/.kube/config, in that order.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			err := run(cmd.Context(), o)
			if err != nil {
				fmt.Fprintln(os.Stderr, "error:", err)
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.metricsAddr, "metrics-bind-address", ":8080", `address of the Prometheus /metrics endpoint; "0" disables it`)
	f.StringVar(&o.probeAddr, "health-probe-bind-address", ":8081", "address of the /healthz and /readyz endpoints")
	f.StringVar(&o.gatewayAddr, "gateway-bind-address", ":8000", "address of the OpenAI-compatible gateway")
	f.Int64Var(&o.gatewayMaxBody, "gateway-max-body-bytes", gateway.DefaultMaxBodyBytes, "largest request body the gateway accepts; larger ones get 413")
	f.IntVar(&o.gatewayMaxAttempts, "gateway-max-attempts", gateway.DefaultMaxAttempts, "providers tried for one request before the gateway gives up")
	f.Int64Var(&o.gatewayBufferBytes, "gateway-buffer-bytes", gateway.DefaultBufferBytes, "bytes that all requests in flight may hold in memory together (bodies read whole, JSON responses rewritten); a request whose body does not fit gets 503 with Retry-After")
	f.Int64Var(&o.gatewayCallerBytes, "gateway-buffer-bytes-per-caller", 0, "bytes of --gateway-buffer-bytes that the request bodies of one caller may hold (the ServiceAccounts of a namespace count as one caller); past it, that caller's requests get 429 with Retry-After. 0: a quarter of --gateway-buffer-bytes; negative: no bound per caller. Applies with --gateway-auth=kubernetes")
	f.DurationVar(&o.gatewayBodyReadTimeout, "gateway-body-read-timeout", gateway.DefaultBodyReadTimeout, "how long a client may take to send a request body; a slower one gets 408")
	f.DurationVar(&o.gatewayHeaderTimeout, "gateway-read-header-timeout", gateway.DefaultReadHeaderTimeout, "how long a client may take to send its request headers; a slower one's connection is closed")
	f.DurationVar(&o.gatewayIdleTimeout, "gateway-idle-timeout", gateway.DefaultIdleTimeout, "how long a kept-alive client connection may wait for its next request before the gateway closes it")
	f.IntVar(&o.gatewayMaxHeaderBytes, "gateway-max-header-bytes", gateway.DefaultMaxHeaderBytes, "largest request headers the gateway accepts; larger ones get 431")
	f.BoolVar(&o.gatewayAccessLog, "gateway-access-log", false, "log one line per gateway request: request ID, workspace, entity, provider, attempts, status, duration, time to first token, tokens and the caller's user name; never keys, tokens or bodies")
	f.DurationVar(&o.gatewayShutdownDelay, "gateway-shutdown-delay", 0, "how long the gateway keeps accepting requests after SIGTERM, while endpoints and load balancers stop sending traffic to it")
	f.DurationVar(&o.gatewayShutdown, "gateway-shutdown-timeout", 30*time.Second, "how long requests in flight (streams included) may finish at shutdown, after the delay")
	f.DurationVar(&o.gatewayTimeouts.Connect, "gateway-connect-timeout", gateway.DefaultTimeouts.Connect, "default upstream connect timeout, for providers that set none")
	f.DurationVar(&o.gatewayTimeouts.ResponseHeader, "gateway-response-header-timeout", gateway.DefaultTimeouts.ResponseHeader, "default wait for upstream response headers, for providers that set none")
	f.DurationVar(&o.gatewayTimeouts.StreamIdle, "gateway-stream-idle-timeout", gateway.DefaultTimeouts.StreamIdle, "default limit on upstream silence within a response, for providers that set none")
	f.StringVar(&o.gatewayAuth, "gateway-auth", authKubernetes, `who may call the gateway: "kubernetes" (a bearer token checked with a TokenReview, each request authorized with a SubjectAccessReview in the path's workspace) or "none" (anyone who reaches it)`)
	f.StringSliceVar(&o.gatewayAuthOptions.Audiences, "gateway-auth-audiences", nil, "audiences a caller's token must be issued for, such as the audience of a projected ServiceAccount token (default: the API server's own)")
	f.DurationVar(&o.gatewayAuthOptions.TokenCacheTTL, "gateway-auth-token-cache-ttl", access.DefaultTokenCacheTTL, "how long the answer of a TokenReview is reused: a deleted ServiceAccount's token keeps working this long")
	f.DurationVar(&o.gatewayAuthOptions.AllowCacheTTL, "gateway-auth-allow-cache-ttl", access.DefaultAllowCacheTTL, "how long an allowed decision is reused: a removed RoleBinding takes effect within it")
	f.DurationVar(&o.gatewayAuthOptions.DenyCacheTTL, "gateway-auth-deny-cache-ttl", access.DefaultDenyCacheTTL, "how long a denied decision is reused: a new RoleBinding takes effect within it")
	f.DurationVar(&o.gatewayAuthOptions.OutageGrace, "gateway-auth-outage-grace", access.DefaultOutageGrace, "while the API server cannot be asked, how long past their cache TTL its last answers for a token and a request keep being used; 0: none, requests get 503 once the caches expire")
	f.BoolVar(&o.egress.AllowLocal, strings.TrimPrefix(egress.AllowLocalFlag, "--"), false, "let Providers point at the built-in denied addresses: loopback, link-local, unspecified and cloud metadata (such as 169.254.169.254, fd00:ec2::254, 100.100.100.200 and 168.63.129.16), also in IPv6 forms that stand for them; for local trials only. Without it the gateway, the probes and the scrapes refuse to connect there; "+egress.DenyFlag+" still applies")
	f.StringSliceVar(&o.egress.Deny, strings.TrimPrefix(egress.DenyFlag, "--"), nil, "more IP ranges (CIDRs such as 10.0.0.0/8, or single addresses) that Providers may not point at, besides the built-in ones, such as the nodes' range; checked on every address dialled, after DNS, and on the IPv4 address an IPv6 one stands for (IPv4-mapped, NAT64, 6to4, Teredo)")
	f.StringSliceVar(&o.egress.Allow, strings.TrimPrefix(egress.AllowFlag, "--"), nil, "IP ranges that Providers may point at although a denied range (built-in or of "+egress.DenyFlag+") holds them: the narrowest range that holds an address decides, and an allowed range wins over a denied one of the same size")
	f.StringSliceVar(&o.egress.NAT64Prefixes, strings.TrimPrefix(egress.NAT64Flag, "--"), nil, "NAT64 prefixes of the cluster's network besides the well-known 64:ff9b::/96, such as 64:ff9b:1::/96: the IPv4 address their IPv6 addresses embed is checked against the ranges too")
	f.BoolVar(&o.egress.ProxyFromEnvironment, strings.TrimPrefix(egress.ProxyFlag, "--"), false, "send upstream requests, probes and scrapes through the proxy of HTTP_PROXY and HTTPS_PROXY (not for hosts in NO_PROXY), after the upstream's host resolves to allowed addresses only; the proxy resolves it again, so give it the same denied ranges. Without it those variables are ignored")
	f.StringVar(&o.budgetStore, "budget-store", "", "Redis or Valkey that holds the InferenceBudget counters of every replica: redis://host:6379/0, or rediss:// for TLS; the password comes from $"+budgetStorePasswordEnv+". Empty: counters in this process, exact with one replica (see --budget-replicas)")
	f.StringVar(&o.budgetStoreCAFile, "budget-store-ca-file", "", "PEM file of the certificate authorities that a rediss:// budget store's certificate must chain to (default: the system's)")
	f.DurationVar(&o.budgetStoreTimeout, "budget-store-timeout", quota.DefaultTimeout, "how long a call to the budget store may take before the budgets of a request follow their failure mode")
	f.DurationVar(&o.fairShareInterval, "fair-share-exchange-interval", flow.DefaultExchangeInterval, "how often each replica adds its fair-share token counters to the budget store's and reads every replica's back, for each pool of providers in use; without --budget-store each replica's counters are its own")
	f.IntVar(&o.budgetReplicas, "budget-replicas", 1, "gateway replicas that share the InferenceBudgets: without --budget-store each replica admits the limits divided by this number, and with one, budgets with failureMode Open do so while the store cannot be reached")
	f.BoolVar(&o.leaderElect, "leader-elect", false, "elect a leader among replicas; only the leader runs the controllers")
	f.StringVar(&o.leaderElectionID, "leader-election-id", "infergate.inference.infergate.dev", "name of the Lease used for leader election")
	f.StringVar(&o.leaderElectionNamespace, "leader-election-namespace", "", "namespace of the leader election Lease (default: the pod's namespace)")
	f.StringVar(&o.systemWorkspace, "system-workspace", "system", "namespace whose Providers serve ModelEntities of every workspace")
	f.StringVar(&o.secretLabelSelector, "secret-label-selector", "", `labels, such as "inference.infergate.dev/api-key=true", that a Secret must carry for the manager to read, watch and cache it; Provider keys in other Secrets are not found (default: every Secret of the cluster)`)
	f.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn, error, or a verbosity number such as 2")
	f.StringVar(&o.logFormat, "log-format", "json", "log encoding: "+strings.Join(logging.Formats, " or "))
	// --kubeconfig is registered on the standard flag set by controller-runtime.
	f.AddGoFlagSet(flag.CommandLine)
	return cmd
}

func newScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := inferencev1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := gatewayv1beta1.Install(s); err != nil {
		return nil, err
	}
	return s, nil
}

// The values of --gateway-auth.
const (
	authKubernetes = "kubernetes"
	authNone       = "none"
)

func run(ctx context.Context, o options) error {
	log, err := logging.New(os.Stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	if o.gatewayAuth != authKubernetes && o.gatewayAuth != authNone {
		return fmt.Errorf("--gateway-auth=%q: want %q or %q", o.gatewayAuth, authKubernetes, authNone)
	}
	for name, d := range map[string]time.Duration{"--gateway-read-header-timeout": o.gatewayHeaderTimeout, "--gateway-idle-timeout": o.gatewayIdleTimeout} {
		if d <= 0 {
			return fmt.Errorf("%s=%s: want a positive duration, such as 10s", name, d)
		}
	}
	if o.gatewayMaxHeaderBytes < 4096 {
		return fmt.Errorf("--gateway-max-header-bytes=%d: want at least 4096, room for a token and the usual headers", o.gatewayMaxHeaderBytes)
	}
	secretLabels, err := labels.ConvertSelectorToLabelsMap(o.secretLabelSelector)
	if err != nil {
		return fmt.Errorf("--secret-label-selector=%q: want labels such as inference.infergate.dev/api-key=true, comma-separated: %w", o.secretLabelSelector, err)
	}
	// Where the gateway, the probes and the scrapes may connect for Providers.
	egressPolicy, err := egress.New(o.egress)
	if err != nil {
		return err
	}
	cacheOptions := cache.Options{DefaultTransform: cache.TransformStripManagedFields()}
	if len(secretLabels) > 0 {
		// The API server sends only these Secrets: the others are never read, watched or kept.
		cacheOptions.ByObject = map[client.Object]cache.ByObject{&corev1.Secret{}: {Label: labels.SelectorFromSet(secretLabels)}}
	}
	ctrl.SetLogger(log)
	klog.SetLogger(log)
	setupLog := log.WithName("setup")

	scheme, err := newScheme()
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("no cluster to connect to: %w", err)
	}
	shutdownTimeout := o.gatewayShutdownDelay + o.gatewayShutdown + 5*time.Second
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: o.metricsAddr},
		HealthProbeBindAddress: o.probeAddr,
		// No election here: the Elector below runs the controllers on the leader, and losing the
		// lease must not stop this manager's gateway, cache and scraper.
		LeaderElection: false,
		// Every runnable gets this long to stop; the gateway's delay and drain must fit in it.
		GracefulShutdownTimeout: ptr.To(shutdownTimeout),
		// The cache holds the Secrets (all, or those of --secret-label-selector), Services and
		// workloads of the cluster that the controllers watch; managed fields are of no use to them.
		Cache: cacheOptions,
	})
	if err != nil {
		return fmt.Errorf("create manager: %w", err)
	}
	if err := requireCRDs(mgr.GetRESTMapper(), cfg.Host); err != nil {
		return err
	}
	grantsAvailable, err := servesKind(mgr.GetRESTMapper(), schema.GroupKind{Group: gatewayv1beta1.GroupName, Kind: "ReferenceGrant"}, gatewayv1beta1.GroupVersion.Version)
	if err != nil {
		return err
	}
	if !grantsAvailable {
		setupLog.Info("the cluster has no Gateway API ReferenceGrant CRD: references to providers in other namespaces than the system workspace are refused")
	}

	var checker gateway.Access
	if o.gatewayAuth == authKubernetes {
		o.gatewayAuthOptions.Registerer = ctrlmetrics.Registry
		c, err := access.New(cfg, o.gatewayAuthOptions)
		if err != nil {
			return fmt.Errorf("gateway authentication: %w", err)
		}
		checker = c
	} else {
		setupLog.Info("the gateway authenticates no one (--gateway-auth=none): whoever reaches it may call every model and provider with their keys")
	}

	// Traces, when the OTEL_* environment variables configure an OTLP endpoint.
	otel.SetLogger(log.WithName("otel"))
	tracerProvider, stopTracing, err := tracing.FromEnv(ctx)
	if err != nil {
		return err
	}
	if tracerProvider != nil {
		defer func() {
			flush, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := stopTracing(flush); err != nil {
				setupLog.Error(err, "flush the last spans")
			}
		}()
		setupLog.Info("tracing gateway requests to the OTLP endpoint of the OTEL_* environment variables")
	}

	if o.egress.ProxyFromEnvironment {
		setupLog.Info("upstream requests use the proxy of HTTP_PROXY and HTTPS_PROXY, once their host resolves to allowed addresses only")
	}

	// Every replica of this installation marks what it sends upstream with the same id, so that
	// a Provider leading back to the gateway is a loop at the second hop, whichever replica.
	gatewayID := egress.GatewayID(cmp.Or(os.Getenv("POD_NAMESPACE"), o.leaderElectionNamespace), o.leaderElectionID)
	limiter, budgetStore, err := newLimiter(o)
	if err != nil {
		return err
	}
	setupLog.Info("inference budgets", "enforcement", limiter.Enforcement(), "replicas", o.budgetReplicas)
	// The fair share of saturated pools is shared through the budget store, where there is one.
	var exchanger flow.Exchanger
	if budgetStore != nil {
		exchanger = &flow.Redis{Client: budgetStore}
	}
	pools, err := flow.NewPools(flow.PoolsOptions{Exchanger: exchanger, Interval: o.fairShareInterval, Timeout: o.budgetStoreTimeout,
		Registerer: ctrlmetrics.Registry, Log: log.WithName("fair-share")})
	if err != nil {
		return err
	}
	store := routing.NewStore()
	gw, err := gateway.New(gateway.Options{
		Limiter:           limiter,
		Pools:             pools,
		ID:                gatewayID,
		Egress:            egressPolicy,
		Store:             store,
		MaxBodyBytes:      o.gatewayMaxBody,
		MaxAttempts:       o.gatewayMaxAttempts,
		BufferBytes:       o.gatewayBufferBytes,
		CallerBufferBytes: o.gatewayCallerBytes,
		BodyReadTimeout:   o.gatewayBodyReadTimeout,
		Timeouts:          o.gatewayTimeouts,
		Registerer:        ctrlmetrics.Registry,
		Gatherer:          ctrlmetrics.Registry,
		Access:            checker,
		Log:               log.WithName("gateway"),
		AccessLog:         o.gatewayAccessLog,
		TracerProvider:    tracerProvider,
	})
	if err != nil {
		return err
	}
	if err := mgr.Add(limiter); err != nil {
		return err
	}
	if err := mgr.Add(pools); err != nil {
		return err
	}
	if err := mgr.Add(&gateway.Server{Addr: o.gatewayAddr, Handler: gw, ShutdownDelay: o.gatewayShutdownDelay, ShutdownTimeout: o.gatewayShutdown, Log: log.WithName("gateway"),
		ReadHeaderTimeout: o.gatewayHeaderTimeout, IdleTimeout: o.gatewayIdleTimeout, MaxHeaderBytes: o.gatewayMaxHeaderBytes}); err != nil {
		return err
	}
	if err := mgr.Add(&snapshot.Builder{
		Cache:           mgr.GetCache(),
		Store:           store,
		SystemWorkspace: o.systemWorkspace,
		GrantsAvailable: grantsAvailable,
		Log:             log.WithName("routing"),
		Registerer:      ctrlmetrics.Registry,
	}); err != nil {
		return err
	}
	scrapeClient := scrape.NewClientFor(egressPolicy)
	if err := mgr.Add(&scrape.Scraper{
		Store:      store,
		Client:     scrapeClient,
		HopID:      gatewayID,
		Registerer: ctrlmetrics.Registry,
		Log:        log.WithName("scrape"),
	}); err != nil {
		return err
	}
	if err := controllers.IndexFields(ctx, mgr.GetFieldIndexer()); err != nil {
		return fmt.Errorf("index the cache: %w", err)
	}
	prober := discovery.NewProberFor(10*time.Second, egressPolicy, gatewayID)
	setupControllers := func(m ctrl.Manager) error {
		events := m.GetEventRecorder("infergate")
		if err := (&controllers.ProviderReconciler{Client: m.GetClient(), Recorder: events, Prober: prober,
			MetricsClient: scrapeClient, SecretLabels: secretLabels}).SetupWithManager(m); err != nil {
			return fmt.Errorf("set up the provider controller: %w", err)
		}
		if err := (&controllers.ModelEntityReconciler{Client: m.GetClient(), Recorder: events, SystemWorkspace: o.systemWorkspace, GrantsAvailable: grantsAvailable}).SetupWithManager(m); err != nil {
			return fmt.Errorf("set up the model entity controller: %w", err)
		}
		if err := (&controllers.InferenceBudgetReconciler{Client: m.GetClient(), Recorder: events, SystemWorkspace: o.systemWorkspace, Limiter: limiter}).SetupWithManager(m); err != nil {
			return fmt.Errorf("set up the inference budget controller: %w", err)
		}
		if err := (&controllers.DeploymentReconciler{Client: m.GetClient(), Scheme: m.GetScheme(), Recorder: events}).SetupWithManager(m); err != nil {
			return fmt.Errorf("set up the deployment controller: %w", err)
		}
		return nil
	}
	if !o.leaderElect {
		if err := setupControllers(mgr); err != nil {
			return err
		}
	} else {
		lock, err := leaderelection.NewResourceLock(cfg, mgr, leaderelection.Options{
			LeaderElection:          true,
			LeaderElectionID:        o.leaderElectionID,
			LeaderElectionNamespace: o.leaderElectionNamespace,
			RenewDeadline:           election.DefaultRenewDeadline,
		})
		if err != nil {
			return fmt.Errorf("leader election: %w", err)
		}
		// Each term of leadership runs the controllers in a manager of its own, which shares
		// this one's cache and client.
		if err := mgr.Add(&election.Elector{Lock: lock, Log: log.WithName("election"), Term: func(ctx context.Context) error {
			term, release, err := election.NewTerm(mgr, shutdownTimeout)
			if err != nil {
				return err
			}
			defer release()
			if err := setupControllers(term); err != nil {
				return err
			}
			return term.Start(ctx)
		}}); err != nil {
			return err
		}
	}

	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("routing-table", func(*http.Request) error {
		if !store.Loaded() {
			return errors.New("the routing table has not been built from the cache yet")
		}
		return nil
	}); err != nil {
		return err
	}

	setupLog.Info("starting manager", "apiServer", cfg.Host, "leaderElection", o.leaderElect, "gateway", o.gatewayAddr, "gatewayAuth", o.gatewayAuth,
		"secrets", cmp.Or(o.secretLabelSelector, "all"))
	if err := mgr.Start(ctx); err != nil {
		return fmt.Errorf("manager stopped: %w", err)
	}
	return nil
}

// newLimiter returns the InferenceBudgets' limiter: on the --budget-store, or in process; and
// the store's client, nil without one.
func newLimiter(o options) (*quota.Limiter, redis.UniversalClient, error) {
	if o.budgetReplicas < 1 {
		return nil, nil, fmt.Errorf("--budget-replicas=%d: want 1 or more", o.budgetReplicas)
	}
	lo := quota.LimiterOptions{Replicas: o.budgetReplicas, Timeout: o.budgetStoreTimeout, Registerer: ctrlmetrics.Registry}
	if o.budgetStore == "" {
		if o.budgetStoreCAFile != "" {
			return nil, nil, errors.New("--budget-store-ca-file needs --budget-store")
		}
		l, err := quota.NewLimiter(lo)
		return l, nil, err
	}
	ro, err := redis.ParseURL(o.budgetStore)
	if err != nil {
		return nil, nil, fmt.Errorf("--budget-store: want redis://host:6379/0 or rediss://host:6380/0: %w", err)
	}
	if ro.Password != "" {
		return nil, nil, errors.New("--budget-store: give the password in $" + budgetStorePasswordEnv + ", not in the URL, where process lists and logs show it")
	}
	ro.Password = os.Getenv(budgetStorePasswordEnv)
	if o.budgetStoreCAFile != "" {
		if ro.TLSConfig == nil {
			return nil, nil, errors.New("--budget-store-ca-file needs a rediss:// --budget-store")
		}
		pem, err := os.ReadFile(o.budgetStoreCAFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--budget-store-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, nil, fmt.Errorf("--budget-store-ca-file=%s holds no PEM certificate", o.budgetStoreCAFile)
		}
		ro.TLSConfig.RootCAs = pool
	}
	// A call that fails follows the budgets' failure mode at once: no retries on the hot path.
	ro.MaxRetries, ro.DialerRetries = -1, 1
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = o.budgetStoreTimeout, o.budgetStoreTimeout, o.budgetStoreTimeout
	ro.ContextTimeoutEnabled = true
	client := redis.NewClient(ro)
	lo.Store = &quota.Redis{Client: client}
	l, err := quota.NewLimiter(lo)
	return l, client, err
}

// servesKind reports whether the cluster serves a kind.
func servesKind(mapper meta.RESTMapper, gk schema.GroupKind, version string) (bool, error) {
	_, err := mapper.RESTMapping(gk, version)
	switch {
	case err == nil:
		return true, nil
	case meta.IsNoMatchError(err):
		return false, nil
	default:
		return false, fmt.Errorf("discover %s: %w", gk, err)
	}
}

// requireCRDs fails with a clear message when the cluster does not know the infergate kinds.
func requireCRDs(mapper meta.RESTMapper, host string) error {
	var missing []string
	for _, kind := range []string{"ModelEntity", "Provider", "Deployment", "InferenceBudget"} {
		gk := schema.GroupKind{Group: inferencev1alpha1.GroupVersion.Group, Kind: kind}
		_, err := mapper.RESTMapping(gk, inferencev1alpha1.GroupVersion.Version)
		switch {
		case err == nil:
		case meta.IsNoMatchError(err):
			missing = append(missing, kind)
		default:
			return fmt.Errorf("cannot read the API of %s: %w", host, err)
		}
	}
	if len(missing) > 0 {
		return errors.New("the infergate CRDs are not installed in the cluster at " + host +
			" (missing " + strings.Join(missing, ", ") + " in " + inferencev1alpha1.GroupVersion.String() +
			"): install them with `kubectl apply --server-side -f config/crd/bases` or the Helm chart charts/infergate")
	}
	return nil
}
