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

package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"k8s.io/client-go/rest"
)

// errNoToken says that the current context has no token to show the gateway.
var errNoToken = errors.New("the current context has no bearer token for the gateway (a client certificate proves " +
	"nothing to it): pass --token or set $" + envToken + ", for example with the token of a ServiceAccount allowed " +
	"to call models (kubectl create token SERVICEACCOUNT -n NAMESPACE), or use a context that logs in with a token " +
	"(OIDC, an exec credential plugin)")

// token is the bearer token for the gateway: --token (kubectl's, which the API server gets
// too), else $INFERGATE_TOKEN, else what the current context would send the API server (a
// token, a token file, or an exec credential plugin's answer). Empty when the context has
// none; the gateway may not ask for one.
func (f *factory) token() (string, error) {
	if f.flags.BearerToken != nil {
		if t := strings.TrimSpace(*f.flags.BearerToken); t != "" {
			return t, nil
		}
	}
	if t := strings.TrimSpace(os.Getenv(envToken)); t != "" {
		return t, nil
	}
	cfg, err := f.restConfig()
	if err != nil {
		return "", nil // no cluster: the gateway may not authenticate
	}
	return contextToken(cfg)
}

// contextToken runs client-go's own authentication wrappers for cfg on a request that goes
// nowhere, and reads the bearer token they set: static tokens, token files and exec credential
// plugins alike.
func contextToken(cfg *rest.Config) (string, error) {
	var seen string
	capture := roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		seen = r.Header.Get("Authorization")
		return nil, errCaptured
	})
	rt, err := rest.HTTPWrappersForConfig(cfg, capture)
	if err != nil {
		return "", fmt.Errorf("the current context's credentials: %w", err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://token.invalid/", nil)
	if _, err := rt.RoundTrip(req); err != nil && !errors.Is(err, errCaptured) {
		return "", fmt.Errorf("the current context's credentials: %w", err)
	}
	token, ok := strings.CutPrefix(seen, "Bearer ")
	if !ok {
		return "", nil
	}
	return token, nil
}

var errCaptured = errors.New("captured")

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
