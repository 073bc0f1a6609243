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
	"net"
	"net/http"
	"time"

	"github.com/go-logr/logr"
)

// Server serves a Gateway on an address. It is a controller-runtime Runnable that runs on
// every replica, leader or not.
type Server struct {
	// Addr is the listen address, such as ":8000".
	Addr string
	// Handler is the gateway.
	Handler http.Handler
	// ShutdownDelay is how long the server keeps accepting new requests once ctx is done,
	// while endpoints, kube-proxy and load balancers stop sending traffic to this replica.
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the wait for requests in flight (streams included) at shutdown.
	ShutdownTimeout time.Duration
	// Log receives the server's lifecycle messages.
	Log logr.Logger
	// Listener, if set, is used instead of listening on Addr.
	Listener net.Listener

	// Limits on what a client may do to a connection; zero takes the default.

	// ReadHeaderTimeout bounds the time a client may take to send its request headers.
	// Default DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout is how long a kept-alive connection may wait for its next request.
	// Default DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the size of a request's headers; larger ones get 431.
	// Default DefaultMaxHeaderBytes.
	MaxHeaderBytes int
}

// Defaults of the Server's limits.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
	DefaultMaxHeaderBytes    = 1 << 20
)

// orDefault returns v, or def when v is zero or less.
func orDefault[T time.Duration | int](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// NeedLeaderElection is false: every replica serves traffic.
func (s *Server) NeedLeaderElection() bool { return false }

// Start serves until ctx is done and ShutdownDelay has passed, then stops accepting and drains
// requests in flight for up to ShutdownTimeout.
func (s *Server) Start(ctx context.Context) error {
	ln := s.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.Addr); err != nil {
			return err
		}
	}
	srv := &http.Server{
		Handler:           s.Handler,
		ReadHeaderTimeout: orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       orDefault(s.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.Log.Info("gateway listening", "address", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if s.ShutdownDelay > 0 {
		s.Log.Info("gateway still serving while traffic moves away", "delay", s.ShutdownDelay.String())
		select {
		case err := <-errc:
			return err
		case <-time.After(s.ShutdownDelay):
		}
	}
	timeout := s.ShutdownTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	s.Log.Info("gateway draining", "timeout", timeout.String())
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
