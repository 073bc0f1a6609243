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

// Package logging builds the process logger: zap, exposed as a logr.Logger through zapr, as
// controller-runtime expects.
package logging

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/go-logr/logr"
	"github.com/go-logr/zapr"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Formats are the accepted values of the log format flag.
var Formats = []string{"json", "console"}

// New returns a logger that writes to w at the given level in the given format.
//
// level is debug, info, warn or error, or a number n ≥ 0 for logr verbosity n (V(n) lines show
// when n is at most the number; 1 is the same as debug).
func New(w io.Writer, level, format string) (logr.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return logr.Discard(), err
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "json":
		enc = zapcore.NewJSONEncoder(encCfg)
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	default:
		return logr.Discard(), fmt.Errorf("unknown log format %q: use one of %s", format, strings.Join(Formats, ", "))
	}
	core := zapcore.NewCore(enc, zapcore.AddSync(w), lvl)
	z := zap.New(core, zap.AddCaller(), zap.ErrorOutput(zapcore.AddSync(w)))
	return zapr.NewLogger(z), nil
}

func parseLevel(level string) (zapcore.Level, error) {
	switch strings.ToLower(level) {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info", "":
		return zapcore.InfoLevel, nil
	case "warn", "warning":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	n, err := strconv.Atoi(level)
	if err != nil || n < 0 || n > 127 {
		return 0, fmt.Errorf("unknown log level %q: use debug, info, warn, error or a verbosity number such as 2", level)
	}
	// zapr maps logr's V(n) to zap level -n.
	return zapcore.Level(-n), nil
}
