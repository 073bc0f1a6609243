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
	"testing"

	inferencev1alpha1 "github.com/infergate/infergate/api/v1alpha1"
	"github.com/infergate/infergate/internal/routing"
)

func TestRetryOn(t *testing.T) {
	if got := retryOn(nil); got != 0 {
		t.Errorf("no opt-in: %b", got)
	}
	all := []inferencev1alpha1.RetryCondition{inferencev1alpha1.RetryOnGatewayError, inferencev1alpha1.RetryOnTimeout, inferencev1alpha1.RetryOnReset}
	if got, want := retryOn(all), routing.RetryGatewayError|routing.RetryTimeout|routing.RetryReset; got != want {
		t.Errorf("every opt-in: %b, want %b", got, want)
	}
	if got := retryOn(all[1:2]); got != routing.RetryTimeout {
		t.Errorf("Timeout: %b", got)
	}
}
