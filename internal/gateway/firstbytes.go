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

package gateway

import (
	"io"
	"net/http"
	"sync"
)

// A model server sends a stream's response headers at once and its first event only after the
// prefill. Were the gateway to pass the headers on as they come, a server that dies in between
// would leave the client a 200 stream that ends before its first event: an error the SDKs show
// as an unexpected EOF, on a request another provider could have answered. So the gateway
// holds a stream until its first bytes: until then the attempt may fail like one that got no
// answer, and be retried or answered with a 502.

// firstBytes is a response body whose first bytes were read ahead.
type firstBytes struct {
	buf    *[]byte
	off, n int
	src    io.ReadCloser
}

var firstBytesPool = sync.Pool{New: func() any { b := make([]byte, 512); return &b }}

func (f *firstBytes) Read(p []byte) (int, error) {
	if f.off < f.n {
		n := copy(p, (*f.buf)[f.off:f.n])
		f.off += n
		return n, nil
	}
	return f.src.Read(p)
}

func (f *firstBytes) Close() error {
	if f.buf != nil {
		firstBytesPool.Put(f.buf)
		f.buf = nil
	}
	return f.src.Close()
}

// awaitFirstBytes waits, under the stream idle timeout (or a virtual model's target's time to
// first token, when armed), for the first bytes of a streamed response, and keeps them for the
// client. It returns the error that ended the body before
// any; resp is then closed.
func (pr *proxyRequest) awaitFirstBytes(resp *http.Response) error {
	if resp.StatusCode != http.StatusOK || !isSSE(resp.Header.Get("Content-Type")) {
		return nil
	}
	buf := firstBytesPool.Get().(*[]byte)
	var n int
	var err error
	if pr.stall != nil {
		// The target's time to first token bounds the wait, and ends the attempt alone.
		n, err = resp.Body.Read(*buf)
	} else {
		idle := newIdleTimer(pr.timeouts.StreamIdle, pr.cancel)
		n, err = idle.read(resp.Body, *buf)
		idle.release()
	}
	if n == 0 {
		firstBytesPool.Put(buf)
		resp.Body.Close()
		if err == nil || err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	pr.head = firstBytes{buf: buf, n: n, src: resp.Body}
	resp.Body = &pr.head
	return nil
}
