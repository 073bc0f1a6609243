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

// Package election runs the controllers on one replica at a time without tying the rest of the
// process to them.
//
// controller-runtime's manager exits when its leader fails to renew the lease. A replica's
// gateway, cache and scraper run in that manager, so an API server outage longer than the renew
// deadline would take the leader's data plane down with it. Here the replica's manager runs no
// election: the Elector is one of its runnables, it stands for election, runs the controllers for
// one term of leadership in a manager of their own, and stands again when the term ends.
package election

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// The timings of controller-runtime's manager, which earlier releases used.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// Elector is a runnable that stands for election for as long as the process runs, and runs Term
// while it leads.
type Elector struct {
	Lock resourcelock.Interface
	// Timings of the election; zero means the default.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Term runs the controllers until its context ends: when the lease is lost, or when the
	// process stops. When it returns early, with or without an error, the lease is released and
	// the Elector stands again.
	Term func(ctx context.Context) error
	Log  logr.Logger
}

// NeedLeaderElection is false: the Elector is what elects.
func (e *Elector) NeedLeaderElection() bool { return false }

// Start stands for election until ctx ends. On the way out, a term in progress ends before the
// lease is released, so that no two replicas' controllers overlap.
func (e *Elector) Start(ctx context.Context) error {
	if e.Term == nil {
		return errors.New("election: no term to run")
	}
	for ctx.Err() == nil {
		if err := e.round(ctx); err != nil {
			return err
		}
	}
	return nil
}

// round stands once, and runs one term if it wins.
func (e *Elector) round(ctx context.Context) error {
	// The round outlives ctx by the time a term takes to stop, so that the lease is released
	// after the controllers are gone.
	round, end := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), e.Log))
	defer end()
	leading := make(chan context.Context, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            e.Lock,
		LeaseDuration:   cmp.Or(e.LeaseDuration, DefaultLeaseDuration),
		RenewDeadline:   cmp.Or(e.RenewDeadline, DefaultRenewDeadline),
		RetryPeriod:     cmp.Or(e.RetryPeriod, DefaultRetryPeriod),
		ReleaseOnCancel: true,
		Name:            e.Lock.Describe(),
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lead context.Context) { leading <- lead },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("election: %w", err)
	}
	ran := make(chan struct{})
	go func() {
		defer close(ran)
		le.Run(round)
	}()

	select {
	case <-ctx.Done():
		end()
		<-ran
		return nil
	case <-ran:
		// Run returns without leading only when its context ends, which ctx's end covers; keep
		// standing otherwise.
		return nil
	case lead := <-leading:
		term, endTerm := context.WithCancel(lead)
		stop := context.AfterFunc(ctx, endTerm)
		e.Log.Info("leading: starting the controllers")
		err := e.Term(term)
		stop()
		switch {
		case ctx.Err() != nil:
			e.Log.Info("stopping: the controllers stopped, releasing the lease")
		case lead.Err() != nil:
			e.Log.Info("lost the lease: the controllers stopped; the gateway keeps serving and this replica stands for election again")
		case err != nil:
			e.Log.Error(err, "the controllers stopped: releasing the lease and standing for election again")
		default:
			e.Log.Info("the controllers stopped: releasing the lease and standing for election again")
		}
		endTerm()
		end()
		<-ran
		if err != nil && ctx.Err() == nil {
			// A term that fails at once would otherwise take and release the lease in a loop.
			select {
			case <-ctx.Done():
			case <-time.After(cmp.Or(e.RetryPeriod, DefaultRetryPeriod)):
			}
		}
		return nil
	}
}
