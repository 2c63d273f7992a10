//go:build !unix

package gateway

import "syscall"

// rawWrite takes nothing where non-blocking writes are not available: the
// frame waits for the writer goroutine.
func rawWrite(rc syscall.RawConn, b []byte) (int, error) { return 0, nil }
