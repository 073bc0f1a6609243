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

// Package redisproc runs a redis-server child process on a free loopback port, for the
// benchmarks that share budgets or fair-share counters through Redis (hack/benchbudget,
// hack/benchfairness). The tests start theirs with internal/redistest.
package redisproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// Server is a redis-server child process that can be killed and started again on its port:
// empty, as after a crash, or, with AppendOnly, with what its append-only file kept.
type Server struct {
	// Addr is host:port on loopback.
	Addr string
	// AppendOnly keeps what was written up to a second before a kill, as the chart's Redis.
	AppendOnly bool
	// Started and Ended, when set, see each process as it starts and ends: a tool that kills
	// its children on a signal keeps track of them.
	Started, Ended func(*os.Process)

	bin, port, dir string
	cmd            *exec.Cmd
}

// New finds redis-server (bin, else $REDIS_SERVER, else the PATH), a free port and a data
// directory named after name; Start runs it.
func New(bin, name string) (*Server, error) {
	if bin == "" {
		bin = os.Getenv("REDIS_SERVER")
	}
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("redis-server"); err != nil {
			return nil, errors.New("redis-server is not installed: make redis-server, or set REDIS_SERVER or -redis-server")
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	dir, err := os.MkdirTemp("", name+"-redis")
	if err != nil {
		return nil, err
	}
	return &Server{Addr: "127.0.0.1:" + port, bin: bin, port: port, dir: dir}, nil
}

// Start runs the server and waits, at most 10 seconds, until it listens.
func (s *Server) Start() error {
	aof := "no"
	if s.AppendOnly {
		aof = "yes"
	}
	cmd := exec.Command(s.bin, "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", aof,
		"--protected-mode", "no", "--loglevel", "warning", "--dir", s.dir)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd = cmd
	if s.Started != nil {
		s.Started(cmd.Process)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("redis-server did not listen on %s: %w", s.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Kill ends the server at once, as a crash would: what it held in memory is gone.
func (s *Server) Kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	if s.Ended != nil {
		s.Ended(s.cmd.Process)
	}
	s.cmd = nil
}

// Stop kills the server and removes its data directory.
func (s *Server) Stop() {
	s.Kill()
	_ = os.RemoveAll(s.dir)
}
