package redislayer

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/redis/rueidis"
)

// A connection that sits idle is read by nobody (the client's pipelined
// connections read only while calls are under way, and the layer's own
// dedicated ones only during a call), so one that Redis closed meanwhile,
// because it restarted or a proxy dropped it, is found broken only when
// the next call is written to it: the call fails at once with EOF or a
// reset, and Redis never saw it. healingClient runs such a call again,
// on another connection, before it fails: the first call after an
// outage of an idle process is not lost. The same errors come, rarely,
// from a connection that Redis closed after running a call but before its
// reply was read (Redis killed at that very moment, with other commands
// of the connection unread): the call then runs twice, the second time on
// the restarted server, or fails although it ran.

// healingClient is the client of a host: rueidis's, with calls that found
// their connection broken run again (see brokenConn) on up to attempts-1
// other connections (the client replaces a broken one at once; with
// several pipelined connections, more than one may be stale).
type healingClient struct {
	rueidis.Client
	attempts int
	retried  func()
}

// Do implements rueidis.Client.
func (c healingClient) Do(ctx context.Context, cmd rueidis.Completed) rueidis.RedisResult {
	r := c.Client.Do(ctx, cmd)
	for i := 1; i < c.attempts && brokenConn(ctx, r.Error()); i++ {
		c.retried()
		r = c.Client.Do(ctx, cmd)
	}
	return r
}

// DoMulti implements rueidis.Client. The calls are run again only when
// every one of them failed with the same broken connection: none was
// answered, so none was run.
func (c healingClient) DoMulti(ctx context.Context, cmds ...rueidis.Completed) []rueidis.RedisResult {
	res := c.Client.DoMulti(ctx, cmds...)
	for i := 1; i < c.attempts && allBroken(ctx, res); i++ {
		c.retried()
		res = c.Client.DoMulti(ctx, cmds...)
	}
	return res
}

// brokenConn reports whether err says that the connection a call was
// written to had been closed by the other side (EOF, a reset, a broken
// pipe): Redis did not run the call, and it may be run again on another
// connection. It is false for Redis's own errors, timeouts (Redis may have
// run the call), failed dials (Redis is down: a new connection would fail
// too) and the caller's cancellation.
func brokenConn(ctx context.Context, err error) bool {
	if err == nil || ctx.Err() != nil {
		return false
	}
	if _, ok := rueidis.IsRedisErr(err); ok {
		return false
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// allBroken reports whether every result failed with one broken
// connection (see brokenConn).
func allBroken(ctx context.Context, res []rueidis.RedisResult) bool {
	if len(res) == 0 {
		return false
	}
	first := res[0].Error()
	if !brokenConn(ctx, first) {
		return false
	}
	for _, r := range res[1:] {
		if err := r.Error(); err == nil || err.Error() != first.Error() {
			return false
		}
	}
	return true
}
