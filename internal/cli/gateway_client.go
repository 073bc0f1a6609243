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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// routePrefix is the gateway's route prefix (gateway.Prefix; the CLI does not link the
// gateway).
const routePrefix = "/apis/inference-gateway/v2/workspaces/"

// gatewayClient sends requests to the gateway.
type gatewayClient struct {
	base   string // such as http://127.0.0.1:8000
	source string // where base came from, for messages
	token  string
	http   *http.Client
}

func newGatewayClient(base, source, token string) *gatewayClient {
	return &gatewayClient{base: base, source: source, token: token, http: &http.Client{
		// Never follow a redirect with the token.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// workspace is the base of workspace ns's routes.
func (c *gatewayClient) workspace(ns string) string { return c.base + routePrefix + ns }

// openAIBase is the OpenAI base URL of workspace ns.
func (c *gatewayClient) openAIBase(ns string) string { return c.workspace(ns) + "/openai/-/v1" }

// do sends a request to url (under the gateway) and returns the response; a connection that
// fails says which URL was tried and how to set another.
func (c *gatewayClient) do(ctx context.Context, method, url string, body io.Reader, header http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("cannot reach the gateway at %s (from %s): %w; give its URL with --gateway-url, $%s or kubectl inference config set --gateway-url",
			c.base, c.source, unwrapURLError(err), envGatewayURL)
	}
	return resp, nil
}

// getJSON GETs url and decodes a 200 answer into v; other answers are a *gatewayError.
func (c *gatewayClient) getJSON(ctx context.Context, url string, v any) error {
	resp, err := c.do(ctx, http.MethodGet, url, nil, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return c.answerError(resp.StatusCode, data)
	}
	return json.Unmarshal(data, v)
}

// gatewayError is an answer of the gateway other than 2xx.
type gatewayError struct {
	Status int
	Code   string
	Detail string
}

func (e *gatewayError) Error() string {
	return fmt.Sprintf("the gateway answered %d %s: %s", e.Status, http.StatusText(e.Status), e.Detail)
}

// answerError reads the gateway's error body (detail and code), and says what to do about a
// missing token.
func (c *gatewayClient) answerError(status int, data []byte) error {
	// The gateway's body, {"detail": ..., "error": {...}}, or its OpenAI error object alone, as
	// an OpenAI SDK hands it over.
	var body struct {
		Detail  string `json:"detail"`
		Message string `json:"message"`
		Code    string `json:"code"`
		Error   struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	e := &gatewayError{Status: status, Detail: strings.TrimSpace(string(data))}
	if json.Unmarshal(data, &body) == nil {
		switch {
		case body.Detail != "":
			e.Detail, e.Code = body.Detail, body.Error.Code
		case body.Message != "":
			e.Detail, e.Code = body.Message, body.Code
		}
	}
	if status == http.StatusUnauthorized && c.token == "" {
		return fmt.Errorf("%w\n%w", e, errNoToken)
	}
	return e
}

// isStatus reports whether err is a gateway answer with this status.
func isStatus(err error, status int) bool {
	var ge *gatewayError
	return errors.As(err, &ge) && ge.Status == status
}

func unwrapURLError(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return inner
		}
	}
	return err
}
