//go:build unix

package gateway

import (
	"errors"
	"syscall"

	"github.com/gochannels/channels/internal/rawio"
)

// rawWriter makes non-blocking writes to a socket. Its write function is
// bound once, so that a write allocates nothing; one write at a time (the
// corkWriter's lock).
type rawWriter struct {
	rc  syscall.RawConn
	b   []byte
	n   int
	err error
	fn  func(fd uintptr) bool
}

func newRawWriter(rc syscall.RawConn) *rawWriter {
	r := &rawWriter{rc: rc}
	r.fn = r.attempt
	return r
}

// attempt is one write(2) of r.b: never wait for the socket.
func (r *rawWriter) attempt(fd uintptr) bool {
	r.n, r.err = rawio.Write(int(fd), r.b)
	return true
}

// write makes one non-blocking write of b to the socket: it returns how
// many bytes the kernel took, zero when its buffer is full.
func (r *rawWriter) write(b []byte) (int, error) {
	r.b = b
	cerr := r.rc.Write(r.fn)
	n, err := r.n, r.err
	r.b, r.err = nil, nil
	if cerr != nil {
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
