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

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// redisServer is a redis-server child process on a loopback port that the outage phase kills
// and starts again on the same port: empty, as after a crash, or, with -appendonly, with what
// its append-only file kept.
type redisServer struct {
	bin, port, addr, dir string
	cmd                  *exec.Cmd
}

func startRedis(bin string) (*redisServer, error) {
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
	dir, err := os.MkdirTemp("", "benchbudget-redis")
	if err != nil {
		return nil, err
	}
	s := &redisServer{bin: bin, port: port, addr: "127.0.0.1:" + port, dir: dir}
	return s, s.start()
}

func (s *redisServer) start() error {
	aof := "no"
	if *appendOnly {
		aof = "yes" // as the chart's Redis: a restart reads back what was written up to a second before
	}
	cmd := exec.Command(s.bin, "--port", s.port, "--bind", "127.0.0.1", "--save", "", "--appendonly", aof,
		"--protected-mode", "no", "--loglevel", "warning", "--dir", s.dir)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not listen on %s: %w", s.addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill ends the server at once, as a crash would: what it held is gone.
func (s *redisServer) kill() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

func (s *redisServer) stop() {
	s.kill()
	_ = os.RemoveAll(s.dir)
}
