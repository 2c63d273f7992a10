//go:build unix

package gateway

import (
	"errors"
	"syscall"
)

// rawWrite makes one non-blocking write of b to the socket: it returns how
// many bytes the kernel took, zero when its buffer is full.
func rawWrite(rc syscall.RawConn, b []byte) (int, error) {
	var (
		n   int
		err error
	)
	if cerr := rc.Write(func(fd uintptr) bool {
		n, err = syscall.Write(int(fd), b)
		return true // one attempt: never wait for the socket
	}); cerr != nil {
		return 0, cerr
	}
	if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return n, nil
}
