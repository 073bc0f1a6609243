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

// Package quota enforces InferenceBudgets: counters of requests and tokens per window, checked
// and taken in one atomic step of a store that every gateway replica shares (Redis, through a
// server-side script on the store's clock), or of an in-process store with the same semantics.
//
// Tokens are reserved before a request goes upstream (its estimated input and the output it
// may produce) and settled from the usage the provider reports once it is over. Every counter
// that matches a request must allow it; when the output room left is smaller than what the
// request asks, the grant is lowered to fit, so that the limit holds exactly.
package quota

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"
)

// Window is the period a limit counts over.
type Window uint8

// Windows. Seconds and minutes are fixed windows of the store's clock; days and months are
// calendar windows in the budget's time zone.
const (
	Second Window = iota + 1
	Minute
	Day
	Month
)

func (w Window) String() string {
	switch w {
	case Second:
		return "second"
	case Minute:
		return "minute"
	case Day:
		return "day"
	case Month:
		return "month"
	}
	return "window(" + strconv.Itoa(int(w)) + ")"
}

// Limit is one limit of a budget.
type Limit struct {
	// Name is the field of spec.limits: requestsPerSecond, tokensPerDay, ...
	Name   string
	Window Window
	// Max is the most the window admits.
	Max int64
	// Tokens tells that the limit counts tokens; else requests.
	Tokens bool
}

// Budget is an InferenceBudget, compiled for the gateway.
type Budget struct {
	Workspace, Name string
	// ID is "workspace/name".
	ID string
	// Global tells that the budget lives in the system workspace: it applies to the requests of
	// every workspace, with counters for each.
	Global bool
	// PerCaller gives each caller counters of its own.
	PerCaller bool
	// Users and Groups, when either is set, narrow the budget to these callers.
	// ServiceAccounts are among Users by their user name.
	Users, Groups []string
	// Entities, when set, narrow the budget to requests for these entities.
	Entities []string
	// Providers, when set ("namespace/name"), narrow the budget to requests that may reach them.
	Providers []string
	Limits    []Limit
	// Input and Output say which tokens the token limits count.
	Input, Output bool
	// Zone holds the calendar of the day and month windows.
	Zone *time.Location
	// FailOpen: while the store cannot be reached, each replica enforces its share of the
	// limits alone; else requests are refused.
	FailOpen bool
	// Specificity orders budgets for reporting: the most specific wins ties.
	Specificity int
}

// Counter is one limit of a budget, counted for one key (a workspace or a caller).
type Counter struct {
	// Key identifies the counter, without its window; the store appends the window's start.
	Key    string
	Budget *Budget
	Limit  *Limit
}

// counts tells what the counter adds for a request: 1 for requests, else its input tokens
// and the output tokens granted, where the budget counts them.
func (c *Counter) counts() (input, output bool) {
	if !c.Limit.Tokens {
		return false, false
	}
	return c.Budget.Input, c.Budget.Output
}

// Request is what one request asks of its counters.
type Request struct {
	Counters []Counter
	// Input is the estimated input tokens.
	Input int64
	// Output is the output tokens the request may produce: the client's cap, or the default
	// reservation for requests without one.
	Output int64
}

// State is a counter's window after a decision.
type State struct {
	// Start and End bound the window.
	Start, End time.Time
	// Used is what the window has admitted, this request included when it was allowed.
	Used int64
}

// Remaining is what the window has left.
func (s State) Remaining(c *Counter) int64 { return max(c.Limit.Max-s.Used, 0) }

// Decision is the store's answer to a Request.
type Decision struct {
	Allowed bool
	// Output is the output tokens granted: Request.Output or less.
	Output int64
	// Refused is the index of the first counter that refused, or -1.
	Refused int
	// RetryAfter is when every counter that refused has a new window.
	RetryAfter time.Duration
	// Now is the store's time of the decision.
	Now time.Time
	// States are the counters' windows, in Request.Counters order.
	States []State
	// Via says which store decided: ViaStore, ViaInProcess or ViaFallback.
	Via string
	// reserved is what each counter took, for settlement.
	reserved []int64
}

// Reuse returns an empty Decision that keeps d's slices, for a pooled request.
func (d *Decision) Reuse() Decision {
	return Decision{States: d.States[:0], reserved: d.reserved[:0]}
}

// Where decisions are made.
const (
	ViaStore     = "store"      // the shared store
	ViaInProcess = "in_process" // the in-process store of a replica without a shared one
	ViaFallback  = "fallback"   // the per-replica share while the store cannot be reached
)

// ErrUnavailable is returned when the store cannot be reached and a budget of the request
// fails closed.
var ErrUnavailable = errors.New("the budget store cannot be reached")

// Store holds counters.
type Store interface {
	// Reserve decides r in one atomic step, takes what an allowed request counts, and fills d.
	// divisor divides every limit (the per-replica share); 1 for none.
	Reserve(ctx context.Context, r *Request, divisor int64, d *Decision) error
	// Settle adds deltas[i] to the counter keys[i], where it still exists.
	Settle(ctx context.Context, keys []string, deltas []int64) error
	// Used returns what the window of each key holds (0 for none).
	Used(ctx context.Context, keys []string) ([]int64, error)
	// Ping checks that the store answers.
	Ping(ctx context.Context) error
}

// take is what counter c adds for an allowed request with the given input and output.
func take(c *Counter, input, output int64) int64 {
	in, out := c.counts()
	if !c.Limit.Tokens {
		return 1
	}
	var n int64
	if in {
		n += input
	}
	if out {
		n += output
	}
	return n
}

// decide is the decision rule, the same as the Redis script's: a request counter needs room
// for one more request; a token counter needs room for the input it counts, and, when it
// counts output and the request may produce some, for one output token at least. The output
// granted is the least room any output-counting counter has left, at most what was asked.
// used[i] is what counter i's window holds; the result is the grant, and the index of the
// first counter that refused or -1.
func decide(r *Request, maxes, used []int64) (output int64, refused int) {
	output, refused = r.Output, -1
	for i := range r.Counters {
		c := &r.Counters[i]
		ok := true
		if !c.Limit.Tokens {
			ok = used[i]+1 <= maxes[i]
		} else {
			in, out := c.counts()
			room := maxes[i] - used[i]
			if in {
				room -= r.Input
			}
			switch {
			case out && r.Output > 0:
				if ok = room >= 1; ok && room < output {
					output = room
				}
			default:
				ok = room >= 0
			}
		}
		if !ok && refused < 0 {
			refused = i
		}
	}
	return output, refused
}

// Blocking returns, of the counters that refuse r after decision d, the one whose window ends
// last (the first of them on a tie: the most specific): what the request waits for. divisor is
// what the limits were divided by. It returns d.Refused when none can be told.
func Blocking(r *Request, d *Decision, divisor int64) int {
	best := d.Refused
	if best < 0 || len(d.States) != len(r.Counters) {
		return best
	}
	for i := range r.Counters {
		if refuses(r, i, r.Counters[i].Limit.Max/divisor, d.States[i].Used) && d.States[i].End.After(d.States[best].End) {
			best = i
		}
	}
	return best
}

// refuses tells whether counter i of r, with limit max and used in its window, refuses r by
// itself.
func refuses(r *Request, i int, max, used int64) bool {
	one := Request{Counters: r.Counters[i : i+1], Input: r.Input, Output: r.Output}
	_, refused := decide(&one, []int64{max}, []int64{used})
	return refused >= 0
}

// Key returns the store key of a counter's window that starts at start.
func Key(base string, start time.Time) string {
	return base + ":" + strconv.FormatInt(start.UnixMilli(), 10)
}

// CounterKey returns the base key of limit l of budget b for a request of workspace ws by
// caller (used when b counts per caller). Keys of one workspace share a Redis Cluster hash
// slot, so that a request's counters can be taken in one script.
func CounterKey(b *Budget, l *Limit, ws, caller string) string {
	k := "infergate:{" + ws + "}:" + b.ID + ":" + l.Name
	if b.PerCaller {
		k += ":" + caller
	}
	return k
}

// windowOf returns the window of kind w that holds now, in zone for days and months.
func windowOf(w Window, now time.Time, zone *time.Location) (start, end time.Time) {
	switch w {
	case Second:
		start = now.Truncate(time.Second)
		return start, start.Add(time.Second)
	case Minute:
		start = now.Truncate(time.Minute)
		return start, start.Add(time.Minute)
	}
	if zone == nil {
		zone = time.UTC
	}
	t := now.In(zone)
	y, m, d := t.Date()
	if w == Day {
		start = time.Date(y, m, d, 0, 0, 0, 0, zone)
		return start, time.Date(y, m, d+1, 0, 0, 0, 0, zone)
	}
	start = time.Date(y, m, 1, 0, 0, 0, 0, zone)
	return start, time.Date(y, m+1, 1, 0, 0, 0, 0, zone)
}

// Window returns the window of limit l of budget b that holds now.
func (b *Budget) Window(l *Limit, now time.Time) (start, end time.Time) {
	return windowOf(l.Window, now, b.Zone)
}

// Applies tells whether b counts a request of workspace ws by user name (with groups) for
// entity (empty on the provider route) that may reach the providers ("namespace/name").
func (b *Budget) Applies(ws, name string, groups []string, entity string, providers []string) bool {
	if !b.Global && b.Workspace != ws {
		return false
	}
	if len(b.Users)+len(b.Groups) > 0 {
		if !slices.Contains(b.Users, name) && !slices.ContainsFunc(groups, func(g string) bool { return slices.Contains(b.Groups, g) }) {
			return false
		}
	}
	if len(b.Entities) > 0 && (entity == "" || !slices.Contains(b.Entities, entity)) {
		return false
	}
	if len(b.Providers) > 0 && !slices.ContainsFunc(providers, func(p string) bool { return slices.Contains(b.Providers, p) }) {
		return false
	}
	return true
}
