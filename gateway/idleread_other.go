//go:build !unix

package gateway

// rawReads reports whether idleConn can read sockets here: not without
// non-blocking reads, so the library reads the connection itself.
const rawReads = false

func (c *idleConn) attempt(fd uintptr) bool { return true }
