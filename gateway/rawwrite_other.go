//go:build !unix

package gateway

import "syscall"

// rawWriter takes nothing where non-blocking writes are not available: the
// frame waits for the writer goroutine.
type rawWriter struct{}

func newRawWriter(rc syscall.RawConn) *rawWriter { return &rawWriter{} }

func (r *rawWriter) write(b []byte) (int, error) { return 0, nil }
