//go:build unix

package redislayer_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// Redis is stopped for 3 s during a send/receive loop over ordinary and
// process-specific channels, then restarted. Meanwhile every call fails
// with ErrUnavailable (or its own deadline), within a bounded time; the
// process stays up; after the restart the loop recovers without anything
// being restarted on the Go side.
func TestRedisRestart(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{srv.URL}, Timeout: 500 * time.Millisecond})
	ctx := t.Context()
	proc, err := l.NewChannel(ctx, "fault.gw!")
	if err != nil {
		t.Fatal(err)
	}

	// iteration sends and receives once on each kind of channel.
	iteration := func(i int) error {
		if err := l.Send(ctx, "fault.work", channels.Content{"i": int64(i)}); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, _, err := l.Receive(rctx, "fault.work"); err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		if err := l.Send(ctx, proc, channels.Content{"i": int64(i)}); err != nil {
			return fmt.Errorf("send to %s: %w", proc, err)
		}
		if _, _, err := l.ReceivePrefix(rctx, "fault.gw!"); err != nil {
			return fmt.Errorf("receive prefix: %w", err)
		}
		return nil
	}

	type result struct {
		start, end time.Time
		err        error
	}
	var (
		mu      sync.Mutex
		results []result
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			err := iteration(i)
			mu.Lock()
			results = append(results, result{start, time.Now(), err})
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
		}
	})
	okSince := func(since time.Time) (time.Time, bool) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range results {
			if r.start.After(since) && r.err == nil {
				return r.end, true
			}
		}
		return time.Time{}, false
	}

	if _, ok := waitFor(10*time.Second, func() bool { _, ok := okSince(time.Time{}); return ok }); !ok {
		close(stop)
		wg.Wait()
		t.Fatalf("the loop never succeeded before the outage: %v", results)
	}
	stoppedAt := time.Now()
	srv.Stop()
	time.Sleep(3 * time.Second)
	restartedAt := time.Now()
	srv.Restart(t)
	recoveredAt, recovered := waitFor(15*time.Second, func() bool { _, ok := okSince(restartedAt); return ok })
	if recovered {
		recoveredAt, _ = okSince(restartedAt)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	if !recovered {
		t.Fatalf("no successful send/receive within 15 s of Redis restarting; last results: %v", tail(results, 5))
	}
	t.Logf("recovered %v after Redis restarted (first full send/receive iteration completed)", recoveredAt.Sub(restartedAt).Round(time.Millisecond))

	var during, unavailable int
	for _, r := range results {
		if r.start.Before(stoppedAt.Add(100*time.Millisecond)) || !r.end.Before(restartedAt) {
			continue
		}
		during++
		if took := r.end.Sub(r.start); took > 5*time.Second {
			t.Errorf("an iteration during the outage took %v; calls must fail within a bounded time", took)
		}
		switch {
		case r.err == nil:
			t.Errorf("an iteration succeeded while Redis was down")
		case errors.Is(r.err, redislayer.ErrUnavailable):
			unavailable++
		case errors.Is(r.err, context.DeadlineExceeded):
			// A receive may reach its own deadline first.
		default:
			t.Errorf("an iteration during the outage failed with %v; want ErrUnavailable", r.err)
		}
	}
	if during == 0 || unavailable == 0 {
		t.Fatalf("%d iterations during the outage, %d failed with ErrUnavailable; want some", during, unavailable)
	}
	c := l.Counters()
	if c.Unavailable == 0 || c.Reconnects == 0 {
		t.Errorf("Counters() = %+v; want Unavailable and Reconnects counted", c)
	}
	t.Logf("%d iterations during the outage, %d with ErrUnavailable; counters %+v", during, unavailable, c)
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return time.Now(), true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Time{}, false
}

func tail[T any](xs []T, n int) []T {
	if len(xs) > n {
		return xs[len(xs)-n:]
	}
	return xs
}

// Redis stops answering without closing its connections (the process is
// frozen with SIGSTOP): sends, receives and prefix receives all return
// within a bounded time, and work resumes once Redis answers again.
func TestRedisFrozen(t *testing.T) {
	t.Parallel()
	srv := testenv.StartRedis(t)
	l := newLayer(t, redislayer.Config{Hosts: []string{srv.URL}, Timeout: 500 * time.Millisecond})
	proc := redisPID(t, srv.URL)
	t.Cleanup(func() { signalProcess(t, proc, "CONT") })
	ctx := t.Context()
	gw, _ := l.NewChannel(ctx, "frozen.gw!")

	type call struct {
		what       string
		start, end time.Time
		err        error
	}
	var (
		mu    sync.Mutex
		calls []call
	)
	record := func(what string, start time.Time, err error) {
		mu.Lock()
		calls = append(calls, call{what, start, time.Now(), err})
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(what string, f func() error) {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				record(what, start, f())
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	loop("send", func() error {
		if err := l.Send(ctx, "frozen.work", channels.Content{}); err != nil && !errors.Is(err, channels.ErrChannelFull) {
			return err
		}
		return l.Send(ctx, gw, channels.Content{})
	})
	loop("receive", func() error {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, _, err := l.Receive(rctx, "frozen.work")
		return err
	})
	loop("receive prefix", func() error {
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, _, err := l.ReceivePrefix(rctx, "frozen.gw!")
		return err
	})
	time.Sleep(500 * time.Millisecond)
	frozenAt := time.Now()
	signalProcess(t, proc, "STOP")
	time.Sleep(3 * time.Second)
	thawedAt := time.Now()
	signalProcess(t, proc, "CONT")
	recovered := func(what string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range calls {
			if c.what == what && c.start.After(thawedAt) && c.err == nil {
				return true
			}
		}
		return false
	}
	_, ok := waitFor(15*time.Second, func() bool {
		return recovered("send") && recovered("receive") && recovered("receive prefix")
	})
	close(stop)
	wg.Wait()
	if !ok {
		t.Fatalf("sends and receives did not all succeed again within 15 s of Redis answering again")
	}
	// A call under way when Redis froze, or started while it was frozen,
	// returns within its own deadline (1 s) plus a few call timeouts.
	const bound = 4 * time.Second
	failed := 0
	for _, c := range calls {
		if c.end.Before(frozenAt) || c.start.After(thawedAt) {
			continue
		}
		if took := c.end.Sub(c.start); took > bound {
			t.Errorf("%s took %v while Redis was frozen; want at most %v", c.what, took, bound)
		}
		if c.err != nil {
			failed++
			if !errors.Is(c.err, redislayer.ErrUnavailable) && !errors.Is(c.err, context.DeadlineExceeded) {
				t.Errorf("%s failed with %v; want ErrUnavailable", c.what, c.err)
			}
		}
	}
	if failed == 0 {
		t.Fatalf("no call failed while Redis was frozen")
	}
}

// redisPID returns the process ID of the Redis server at url (one this
// test started).
func redisPID(t *testing.T, url string) int {
	t.Helper()
	c := rawClient(t, url)
	info, err := c.Do(t.Context(), c.B().Info().Section("server").Build()).ToString()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "process_id:"); ok {
			pid, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return pid
		}
	}
	t.Fatal("INFO server has no process_id")
	return 0
}

func signalProcess(t *testing.T, pid int, sig string) {
	t.Helper()
	s := map[string]syscall.Signal{"STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT}[sig]
	if err := syscall.Kill(pid, s); err != nil {
		t.Logf("kill -%s %d: %v", sig, pid, err)
	}
}
