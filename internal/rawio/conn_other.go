//go:build !unix

package rawio

import "net"

// Wrap returns c: only Unix systems read and write sockets here.
func Wrap(c net.Conn) net.Conn { return c }

// Unwrap returns c.
func Unwrap(c net.Conn) net.Conn { return c }
