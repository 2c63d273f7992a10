//go:build !linux

package gateway

// parker parks idle read loops on Linux only (see park_linux.go); here
// every read loop waits in its own goroutine.
type parker struct{}

var parking parker

func (parker) park(*wsConn) bool { return false }
func (parker) release(*idleConn) {}
