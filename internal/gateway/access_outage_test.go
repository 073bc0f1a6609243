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

package gateway_test

import (
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/infergate/infergate/internal/access"
	"github.com/infergate/infergate/internal/gateway"
	"github.com/infergate/infergate/internal/routing"
	"github.com/infergate/infergate/internal/simulator"
	"github.com/infergate/infergate/internal/testenv"
)

// A deleted ServiceAccount's token stays refused when the API server then goes away: the
// outage grace answers with the API server's last answer for the token, and its last answer
// was a refusal (a TokenReview with status.error set, which the webhook authenticator returns
// as an error), not the acceptance before it.
func TestRevokedTokenStaysRevokedInAnOutage(t *testing.T) {
	c := startCluster(t)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c.run("", "apply", "-k", filepath.Join(root, "config", "access"))
	c.run("", "create", "namespace", "team")
	up := newUpstream(t, simulator.Options{Name: "sim", Models: []string{served}})
	// Short caches, so that the gateway asks again soon; a long grace, so that only the
	// answers decide, not the clock.
	const ttl = 100 * time.Millisecond
	checker, err := access.New(c.env.Config, access.Options{TokenCacheTTL: ttl, AllowCacheTTL: ttl, DenyCacheTTL: ttl, OutageGrace: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(t, routing.Spec{
		Providers: []routing.ProviderSpec{provider("team", "sim", up.srv.URL)},
		Entities:  []routing.EntitySpec{entity("team", "llama", backend("team", "sim", served))},
	}, gateway.Options{Access: checker})

	token := c.serviceAccount("team", "leaving")
	c.bind("team", "leaving-calls", "infergate-model-user", "leaving")
	client := openai.NewClient(option.WithBaseURL(g.base("team")+"/openai/-/v1/"), option.WithAPIKey(token), option.WithMaxRetries(0))
	chat := func() int {
		t.Helper()
		_, err := client.Chat.Completions.New(ctxTimeout(t, 30*time.Second), chatParams("llama"))
		var apiErr *openai.Error
		switch {
		case err == nil:
			return http.StatusOK
		case errors.As(err, &apiErr):
			return apiErr.StatusCode
		}
		t.Fatalf("chat: %v", err)
		return 0
	}
	if status := chat(); status != http.StatusOK {
		t.Fatalf("before the ServiceAccount is deleted: %d, want 200", status)
	}

	// Deleted: the token is refused once the API server's own token cache (10 s) lets go.
	c.run("", "delete", "serviceaccount", "-n", "team", "leaving")
	eventually(t, 30*time.Second, func() error {
		if status := chat(); status != http.StatusUnauthorized {
			return fmt.Errorf("after the ServiceAccount was deleted: %d, want 401", status)
		}
		return nil
	})

	if err := c.env.ControlPlane.APIServer.Stop(); err != nil {
		t.Fatal(err)
	}
	// Past the token cache's TTL, each request asks the API server, which cannot answer.
	for range 3 {
		time.Sleep(2 * ttl)
		switch status := chat(); status {
		case http.StatusUnauthorized, http.StatusServiceUnavailable:
		default:
			t.Fatalf("in an outage after the token was refused: %d, want 401 or 503", status)
		}
	}
}
