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

// Package procfs lists the processes of a Linux machine from /proc, for the quickstart (which
// stops what an earlier run left behind) and for tests that look for or kill processes.
package procfs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Process is one process as /proc shows it.
type Process struct {
	PID  int
	PPID int
	// State is the one-letter state of /proc/<pid>/stat: 'R' running, 'S' sleeping, 'Z' a
	// zombie (exited, waiting for its parent to read its status), and so on.
	State byte
	// Args is the command line; empty for kernel threads.
	Args []string
}

func (p Process) String() string { return strconv.Itoa(p.PID) + ": " + strings.Join(p.Args, " ") }

// Zombie reports whether the process has exited and only waits for its parent.
func (p Process) Zombie() bool { return p.State == 'Z' }

// List returns the processes running now. Processes that exit while it reads are left out.
func List() ([]Process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var procs []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := read(pid)
		if ok {
			procs = append(procs, p)
		}
	}
	return procs, nil
}

func read(pid int) (Process, bool) {
	dir := filepath.Join("/proc", strconv.Itoa(pid))
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return Process{}, false
	}
	// "pid (comm) state ppid ...": comm may hold spaces and parentheses, so the fields are
	// those after the last ')'.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(fields) < 2 || len(fields[0]) != 1 {
		return Process{}, false
	}
	ppid, _ := strconv.Atoi(fields[1])
	p := Process{PID: pid, PPID: ppid, State: fields[0][0]}
	if cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline")); err == nil && len(cmdline) > 0 {
		p.Args = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	}
	return p, true
}
