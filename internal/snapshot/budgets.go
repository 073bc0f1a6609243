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

package snapshot

import (
	"cmp"
	"time"

	"k8s.io/apiserver/pkg/authentication/serviceaccount"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/quota"
)

// Budget compiles an InferenceBudget for the gateway. A budget in the system workspace applies
// to every workspace. An unknown time zone counts days and months in UTC (the budget's
// controller reports it); a budget is never dropped for it, so that its limits still hold.
func Budget(b *inferencev1alpha1.InferenceBudget, systemWorkspace string) *quota.Budget {
	s := &b.Spec
	q := &quota.Budget{
		Workspace: b.Namespace, Name: b.Name, ID: b.Namespace + "/" + b.Name,
		Global:    b.Namespace == systemWorkspace,
		PerCaller: s.Per == inferencev1alpha1.BudgetPerCaller,
		Entities:  s.ModelEntities,
		FailOpen:  s.FailureMode == inferencev1alpha1.FailOpen,
		Zone:      Zone(s.TimeZone),
	}
	switch s.Tokens {
	case inferencev1alpha1.TokensInput:
		q.Input = true
	case inferencev1alpha1.TokensOutput:
		q.Output = true
	default:
		q.Input, q.Output = true, true
	}
	for _, sub := range s.Subjects {
		switch sub.Kind {
		case inferencev1alpha1.SubjectUser:
			q.Users = append(q.Users, sub.Name)
		case inferencev1alpha1.SubjectGroup:
			q.Groups = append(q.Groups, sub.Name)
		case inferencev1alpha1.SubjectServiceAccount:
			q.Users = append(q.Users, serviceaccount.MakeUsername(cmp.Or(sub.Namespace, b.Namespace), sub.Name))
		}
	}
	for _, p := range s.Providers {
		q.Providers = append(q.Providers, cmp.Or(p.Namespace, b.Namespace)+"/"+p.Name)
	}
	l := &s.Limits
	for _, lim := range []struct {
		name   string
		v      *int64
		window quota.Window
		tokens bool
	}{
		{"requestsPerSecond", l.RequestsPerSecond, quota.Second, false},
		{"requestsPerMinute", l.RequestsPerMinute, quota.Minute, false},
		{"tokensPerMinute", l.TokensPerMinute, quota.Minute, true},
		{"tokensPerDay", l.TokensPerDay, quota.Day, true},
		{"tokensPerMonth", l.TokensPerMonth, quota.Month, true},
	} {
		if lim.v != nil {
			q.Limits = append(q.Limits, quota.Limit{Name: lim.name, Window: lim.window, Max: *lim.v, Tokens: lim.tokens})
		}
	}
	// Reporting prefers the budget that says most about the request.
	if !q.Global {
		q.Specificity += 8
	}
	if len(q.Users)+len(q.Groups) > 0 {
		q.Specificity += 4
	}
	if len(q.Entities)+len(q.Providers) > 0 {
		q.Specificity += 2
	}
	if q.PerCaller {
		q.Specificity++
	}
	return q
}

// Zone returns the time zone name, or UTC when it is empty or unknown.
func Zone(name string) *time.Location {
	if name == "" {
		return time.UTC
	}
	z, err := time.LoadLocation(name)
	if err != nil {
		return time.UTC
	}
	return z
}
