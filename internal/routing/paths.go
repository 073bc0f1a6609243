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

package routing

import (
	"net/http"
	"slices"
)

// DefaultPaths are the inference paths the entity routes accept for a model that names none:
// OpenAI's chat completions, completions, embeddings and responses. A right to call a model
// is a right to run it, not to reach the rest of its providers with their keys: their files,
// batches, fine-tuning jobs, or responses stored by other callers.
var DefaultPaths = []string{"v1/chat/completions", "v1/completions", "v1/embeddings", "v1/responses"}

// PathMethod is the method the entity routes accept on an entity's paths.
const PathMethod = http.MethodPost

// AllowsPath reports whether the entity routes accept trailing, the escaped path after "/-/",
// for e. Only the exact paths match: no prefixes, escapes or trailing slashes.
func (e *Entity) AllowsPath(trailing string) bool {
	return slices.Contains(e.Paths, trailing)
}
