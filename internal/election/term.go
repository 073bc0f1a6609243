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

package election

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// NewTerm returns a manager for one term of leadership. It shares the replica's cache, client
// and REST mapper, so that a new term neither lists the cluster again nor holds a second copy of
// it; it serves no metrics or probes, the replica's manager does; and its controllers take the
// names of the previous terms'. Call release once it has stopped: it removes the event handlers
// its controllers added to the shared informers.
//
// Field indexes must be added to the replica's cache before it starts: the shared informers are
// running by the time a term begins.
func NewTerm(replica manager.Manager, gracefulShutdown time.Duration) (m manager.Manager, release func(), err error) {
	shared := &termCache{Cache: replica.GetCache()}
	m, err = manager.New(replica.GetConfig(), manager.Options{
		Scheme:                  replica.GetScheme(),
		Metrics:                 metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress:  "0",
		GracefulShutdownTimeout: &gracefulShutdown,
		Controller:              config.Controller{SkipNameValidation: ptr.To(true)},
		MapperProvider: func(*rest.Config, *http.Client) (meta.RESTMapper, error) {
			return replica.GetRESTMapper(), nil
		},
		NewCache: func(*rest.Config, cache.Options) (cache.Cache, error) { return shared, nil },
		NewClient: func(*rest.Config, client.Options) (client.Client, error) {
			return replica.GetClient(), nil
		},
	})
	if err != nil {
		return nil, nil, err
	}
	return m, shared.release, nil
}

// termCache lends a running cache to a term: starting it waits for the term to end instead of
// starting the informers again, and it keeps the event handlers added through it, to remove
// them when the term is over.
type termCache struct {
	cache.Cache

	mu       sync.Mutex
	added    []handler
	released bool
}

type handler struct {
	informer     cache.Informer
	registration toolscache.ResourceEventHandlerRegistration
}

// Start waits for the term to end: the replica's manager runs the informers.
func (c *termCache) Start(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

func (c *termCache) GetInformer(ctx context.Context, obj client.Object, opts ...cache.InformerGetOption) (cache.Informer, error) {
	i, err := c.Cache.GetInformer(ctx, obj, opts...)
	if err != nil {
		return nil, err
	}
	return &termInformer{Informer: i, term: c}, nil
}

func (c *termCache) GetInformerForKind(ctx context.Context, gvk schema.GroupVersionKind, opts ...cache.InformerGetOption) (cache.Informer, error) {
	i, err := c.Cache.GetInformerForKind(ctx, gvk, opts...)
	if err != nil {
		return nil, err
	}
	return &termInformer{Informer: i, term: c}, nil
}

// keep records a handler the term added, or removes it at once when the term is over.
func (c *termCache) keep(i cache.Informer, r toolscache.ResourceEventHandlerRegistration, err error) (toolscache.ResourceEventHandlerRegistration, error) {
	if err != nil {
		return r, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.released {
		return nil, errors.Join(errTermOver, i.RemoveEventHandler(r))
	}
	c.added = append(c.added, handler{informer: i, registration: r})
	return r, nil
}

var errTermOver = errors.New("the term of leadership is over")

// release removes the handlers of the term's controllers from the shared informers.
func (c *termCache) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = true
	for _, h := range c.added {
		_ = h.informer.RemoveEventHandler(h.registration)
	}
	c.added = nil
}

// termInformer is a shared informer seen from a term: the handlers added through it are the
// term's.
type termInformer struct {
	cache.Informer
	term *termCache
}

func (i *termInformer) AddEventHandler(h toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	r, err := i.Informer.AddEventHandler(h)
	return i.term.keep(i.Informer, r, err)
}

func (i *termInformer) AddEventHandlerWithResyncPeriod(h toolscache.ResourceEventHandler, resync time.Duration) (toolscache.ResourceEventHandlerRegistration, error) {
	r, err := i.Informer.AddEventHandlerWithResyncPeriod(h, resync)
	return i.term.keep(i.Informer, r, err)
}

func (i *termInformer) AddEventHandlerWithOptions(h toolscache.ResourceEventHandler, o toolscache.HandlerOptions) (toolscache.ResourceEventHandlerRegistration, error) {
	r, err := i.Informer.AddEventHandlerWithOptions(h, o)
	return i.term.keep(i.Informer, r, err)
}
