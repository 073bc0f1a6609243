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

// Package naming holds the entity name rule that model entities, providers and gateway paths
// follow, and the normalisation of vendor model ids into names that satisfy it.
//
// The CRDs enforce the same rule with CEL (see api/v1alpha1); a test keeps the two in step.
package naming

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
)

const (
	// MinLength and MaxLength bound an entity name.
	MinLength = 2
	MaxLength = 63
)

// RuleText describes the rule in the words that error messages use.
const RuleText = "Name must start with a lowercase letter, be 2-63 characters, and contain only lowercase letters, digits, and hyphens (no consecutive hyphens, cannot end with a hyphen)."

// ErrInvalidName is returned for a name that breaks the entity rule.
var ErrInvalidName = errors.New(RuleText)

// Valid reports whether s follows the entity rule: 2 to 63 characters, lowercase letters,
// digits and hyphens, starting with a letter, no "--", not ending with "-".
// It allocates nothing, so the gateway can call it on every request.
func Valid(s string) bool {
	if len(s) < MinLength || len(s) > MaxLength {
		return false
	}
	if s[0] < 'a' || s[0] > 'z' || s[len(s)-1] == '-' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-':
			if s[i-1] == '-' {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// Normalize turns a served model id such as "meta/llama-3.2-1b-instruct" into an entity name
// such as "meta-llama-3-2-1b-instruct": lowercase, every run of other characters becomes one
// hyphen, leading and trailing hyphens go, a leading digit gets the prefix "m-", and a name
// longer than 63 characters is cut and suffixed with 8 hex digits of the id's SHA-256 so that
// distinct ids stay distinct. It fails when nothing usable is left.
func Normalize(id string) (string, error) {
	var b strings.Builder
	b.Grow(len(id) + 2)
	pendingHyphen := false
	for _, r := range strings.ToLower(id) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			if pendingHyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			pendingHyphen = false
			b.WriteRune(r)
			continue
		}
		pendingHyphen = true
	}
	name := b.String()
	if name != "" && name[0] >= '0' && name[0] <= '9' {
		name = "m-" + name
	}
	if len(name) > MaxLength {
		sum := sha256.Sum256([]byte(id))
		suffix := hex.EncodeToString(sum[:4])
		name = strings.TrimRight(name[:MaxLength-len(suffix)-1], "-") + "-" + suffix
	}
	if !Valid(name) {
		return "", errors.New("model id " + quote(id) + " cannot be turned into an entity name: " + RuleText)
	}
	return name, nil
}

func quote(s string) string { return `"` + s + `"` }
