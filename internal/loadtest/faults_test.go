package loadtest_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/gochannels/channels/internal/loadtest"
)

// faultyServer speaks the load-test protocol but misbehaves on purpose, so
// that the tests can prove the generators notice. Every WebSocket, whatever
// its path, is both an echo and a member of one room.
type faultyServer struct {
	// echo decides what goes back for one frame on /echo/: nil drops it.
	echo func(f loadtest.Frame, b []byte) []byte
	// fanout decides which frames to broadcast for one received frame (in
	// order); probe frames (seq < 0) always go through.
	fanout func(f loadtest.Frame, b []byte) [][]byte
	// closeEvery, when > 0, closes every closeEvery-th connection shortly
	// after accepting it.
	closeEvery int64
	// rejectEvery, when > 0, answers every rejectEvery-th handshake with 503.
	rejectEvery int64

	accepted atomic.Int64
	mu       sync.Mutex
	members  map[*websocket.Conn]bool
	wg       sync.WaitGroup
}

func (s *faultyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.accepted.Add(1)
	if s.rejectEvery > 0 && n%s.rejectEvery == 0 {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	s.wg.Add(1)
	defer s.wg.Done()
	defer c.CloseNow()
	if s.closeEvery > 0 && n%s.closeEvery == 0 {
		time.Sleep(20 * time.Millisecond)
		c.Close(websocket.StatusGoingAway, "faulty server drops this one")
		return
	}
	s.mu.Lock()
	if s.members == nil {
		s.members = map[*websocket.Conn]bool{}
	}
	s.members[c] = true
	s.mu.Unlock()
	defer func() { s.mu.Lock(); delete(s.members, c); s.mu.Unlock() }()
	fanout := strings.HasPrefix(r.URL.Path, "/fanout/")
	for {
		_, b, err := c.Read(context.Background())
		if err != nil {
			return
		}
		f, err := loadtest.ParseFrame(b)
		if err != nil {
			return
		}
		if !fanout {
			if s.echo != nil {
				b = s.echo(f, b)
			}
			if b != nil {
				c.Write(context.Background(), websocket.MessageText, b)
			}
			continue
		}
		out := [][]byte{b}
		if s.fanout != nil && f.Seq >= 0 {
			out = s.fanout(f, b)
		}
		s.mu.Lock()
		members := make([]*websocket.Conn, 0, len(s.members))
		for m := range s.members {
			members = append(members, m)
		}
		s.mu.Unlock()
		for _, m := range members {
			for _, b := range out {
				m.Write(context.Background(), websocket.MessageText, b)
			}
		}
	}
}

func TestFanoutCountsLostFrames(t *testing.T) {
	// Drops frames 3, 13, 23, …: 5 of 50 for every subscriber.
	srv := &faultyServer{fanout: func(f loadtest.Frame, b []byte) [][]byte {
		if f.Seq%10 == 3 {
			return nil
		}
		return [][]byte{b}
	}}
	ws, _ := startServer(t, srv)
	rep, err := loadtest.RunFanout(context.Background(), loadtest.FanoutConfig{
		Common: quick(ws + "/fanout/"), Subscribers: 8, Messages: 50, Grace: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Expected != 400 || rep.Received != 360 || rep.Lost != 40 {
		t.Errorf("expected %d, received %d, lost %d; want 400, 360, 40", rep.Expected, rep.Received, rep.Lost)
	}
	if rep.Reordered != 0 || rep.Duplicates != 0 || rep.Errors != 0 {
		t.Errorf("reordered %d, duplicates %d, errors %d; want 0 (only losses)", rep.Reordered, rep.Duplicates, rep.Errors)
	}
}

func TestFanoutCountsReorderedFrames(t *testing.T) {
	// Swaps every pair: 1 0 3 2 5 4 …, one step backwards per pair.
	var held []byte
	srv := &faultyServer{fanout: func(f loadtest.Frame, b []byte) [][]byte {
		if f.Seq%2 == 0 {
			held = b
			return nil
		}
		return [][]byte{b, held}
	}}
	ws, _ := startServer(t, srv)
	rep, err := loadtest.RunFanout(context.Background(), loadtest.FanoutConfig{
		Common: quick(ws + "/fanout/"), Subscribers: 5, Messages: 40, Grace: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Received != 200 || rep.Lost != 0 || rep.Reordered != 5*20 || rep.Duplicates != 0 {
		t.Errorf("received %d, lost %d, reordered %d, duplicates %d; want 200, 0, 100, 0", rep.Received, rep.Lost, rep.Reordered, rep.Duplicates)
	}
}

func TestFanoutCountsDuplicates(t *testing.T) {
	// Sends frames 0, 5, 10, … twice.
	srv := &faultyServer{fanout: func(f loadtest.Frame, b []byte) [][]byte {
		if f.Seq%5 == 0 {
			return [][]byte{b, b}
		}
		return [][]byte{b}
	}}
	ws, _ := startServer(t, srv)
	rep, err := loadtest.RunFanout(context.Background(), loadtest.FanoutConfig{
		Common: quick(ws + "/fanout/"), Subscribers: 4, Messages: 30, Grace: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Received != 120 || rep.Lost != 0 || rep.Duplicates != 4*6 || rep.Reordered != 0 {
		t.Errorf("received %d, lost %d, duplicates %d, reordered %d; want 120, 0, 24, 0", rep.Received, rep.Lost, rep.Duplicates, rep.Reordered)
	}
}

func TestEchoCountsWrongEchoesAsErrors(t *testing.T) {
	srv := &faultyServer{echo: func(f loadtest.Frame, b []byte) []byte {
		if f.Seq == 3 {
			return loadtest.AppendFrame(nil, 999, f.T, f.Src, 64)
		}
		return b
	}}
	ws, _ := startServer(t, srv)
	rep, err := loadtest.RunEcho(context.Background(), loadtest.EchoConfig{Common: quick(ws + "/echo/"), Conns: 4, Messages: 10})
	if err != nil {
		t.Fatal(err)
	}
	// Each connection gets 3 good echoes, then a wrong one, and stops.
	if rep.Completed != 12 || rep.Errors != 4 || rep.Timeouts != 0 || rep.Expected != 40 {
		t.Errorf("completed %d errors %d timeouts %d expected %d; want 12 4 0 40", rep.Completed, rep.Errors, rep.Timeouts, rep.Expected)
	}
	if !strings.Contains(rep.FirstError, "got frame 999") {
		t.Errorf("first error %q does not name the wrong frame", rep.FirstError)
	}
}

func TestEchoCountsTimeouts(t *testing.T) {
	srv := &faultyServer{echo: func(f loadtest.Frame, b []byte) []byte {
		if f.Seq >= 5 {
			return nil // swallowed: the client waits in vain
		}
		return b
	}}
	ws, _ := startServer(t, srv)
	for _, pipeline := range []int{1, 3} {
		cm := quick(ws + "/echo/")
		cm.Timeout = 300 * time.Millisecond
		rep, err := loadtest.RunEcho(context.Background(), loadtest.EchoConfig{Common: cm, Conns: 3, Messages: 10, Pipeline: pipeline})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Completed != 15 || rep.Timeouts != 3 || rep.Errors != 0 {
			t.Errorf("pipeline %d: completed %d timeouts %d errors %d (%q); want 15 3 0", pipeline, rep.Completed, rep.Timeouts, rep.Errors, rep.FirstError)
		}
	}
}

func TestDurationCeilingStopsARun(t *testing.T) {
	// A server that never answers: only the ceiling can end the runs.
	srv := &faultyServer{echo: func(loadtest.Frame, []byte) []byte { return nil }}
	ws, _ := startServer(t, srv)
	cm := quick(ws + "/echo/")
	cm.Duration, cm.Timeout = 300*time.Millisecond, time.Minute
	rep, err := loadtest.RunEcho(context.Background(), loadtest.EchoConfig{Common: cm, Conns: 2, Messages: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 0 || rep.Errors != 0 || rep.Timeouts != 0 || !strings.Contains(rep.StoppedEarly, "-duration ceiling (300ms)") {
		t.Errorf("completed %d errors %d timeouts %d stopped early %q; want nothing counted and the ceiling named",
			rep.Completed, rep.Errors, rep.Timeouts, rep.StoppedEarly)
	}

	// Fanout: deliveries never come; the ceiling, not the grace, ends it.
	srv2 := &faultyServer{fanout: func(loadtest.Frame, []byte) [][]byte { return nil }}
	ws2, _ := startServer(t, srv2)
	cm = quick(ws2 + "/fanout/")
	cm.Duration = 500 * time.Millisecond
	frep, err := loadtest.RunFanout(context.Background(), loadtest.FanoutConfig{Common: cm, Subscribers: 2, Messages: 5, Grace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if frep.Received != 0 || frep.Lost != 10 || frep.StoppedEarly == "" || frep.Disconnects != 0 {
		t.Errorf("received %d lost %d disconnects %d stopped early %q; want 0, 10, 0 and a reason", frep.Received, frep.Lost, frep.Disconnects, frep.StoppedEarly)
	}
}

func TestInterruptedRunSaysSo(t *testing.T) {
	srv := &faultyServer{echo: func(loadtest.Frame, []byte) []byte { return nil }}
	ws, _ := startServer(t, srv)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	rep, err := loadtest.RunEcho(ctx, loadtest.EchoConfig{Common: quick(ws + "/echo/"), Conns: 2, Messages: 5})
	if err != nil {
		t.Fatal(err)
	}
	if rep.StoppedEarly != "interrupted" || rep.Errors != 0 {
		t.Errorf("stopped early %q, errors %d; want \"interrupted\", 0", rep.StoppedEarly, rep.Errors)
	}
}

func TestPartialConnectFailuresAreReported(t *testing.T) {
	srv := &faultyServer{rejectEvery: 3} // handshakes 3, 6, 9 get a 503
	ws, _ := startServer(t, srv)
	rep, err := loadtest.RunEcho(context.Background(), loadtest.EchoConfig{Common: quick(ws + "/echo/"), Conns: 9, Messages: 4, DialConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Connected != 6 || rep.ConnectErrors != 3 || rep.Completed != 24 || rep.Expected != 36 {
		t.Errorf("connected %d, connect errors %d, completed %d of %d; want 6, 3, 24 of 36", rep.Connected, rep.ConnectErrors, rep.Completed, rep.Expected)
	}
	err = rep.Failure()
	if !errors.Is(err, loadtest.ErrConnect) || !strings.Contains(err.Error(), "3 of 9 connections failed") || !strings.Contains(err.Error(), "503") {
		t.Errorf("Failure() = %v; want ErrConnect, \"3 of 9 connections failed\" and the status", err)
	}
}

func TestIdleCountsDroppedConnections(t *testing.T) {
	srv := &faultyServer{closeEvery: 4} // the server closes 1 in 4 after accepting
	ws, _ := startServer(t, srv)
	cm := quick(ws + "/echo/")
	cm.ServerPID = os.Getpid()
	rep, err := loadtest.RunIdle(context.Background(), loadtest.IdleConfig{Common: cm, Conns: 20, Hold: 300 * time.Millisecond, Batch: 5})
	if err != nil {
		t.Fatal(err)
	}
	// The probe is connection 1, so 4, 8, …, 20 of the 21 get closed: five
	// of the twenty the run holds.
	if rep.Connected != 20 || rep.Dropped != 5 || rep.OpenAtEnd != 15 {
		t.Errorf("connected %d, dropped %d, open at end %d; want 20, 5, 15", rep.Connected, rep.Dropped, rep.OpenAtEnd)
	}
	if err := rep.Failure(); !errors.Is(err, loadtest.ErrConnect) || !strings.Contains(err.Error(), "closed 5 of 20") {
		t.Errorf("Failure() = %v, want ErrConnect saying the server closed 5 of 20", err)
	}
}

func TestHTTPCountsStatusesReconnectsAndTimeouts(t *testing.T) {
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/alternate/", func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 0 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	})
	mux.HandleFunc("/close/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		w.Write([]byte("bye"))
	})
	mux.HandleFunc("/hang/", func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	_, base := startServer(t, mux)

	rep, err := loadtest.RunHTTP(context.Background(), loadtest.HTTPConfig{Common: quick(base + "/alternate/"), Conns: 3, Requests: 100})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 100 || rep.OK != 50 || rep.Status["200"] != 50 || rep.Status["503"] != 50 {
		t.Errorf("alternate: completed %d ok %d status %v; want 100, 50, 200×50 503×50", rep.Completed, rep.OK, rep.Status)
	}

	rep, err = loadtest.RunHTTP(context.Background(), loadtest.HTTPConfig{Common: quick(base + "/close/"), Conns: 2, Requests: 30})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 30 || rep.Connections != 30 || rep.Errors != 0 || rep.BodyBytes != 90 {
		t.Errorf("close: completed %d over %d connections, errors %d (%q), body %d; want 30 over 30, 0, 90",
			rep.Completed, rep.Connections, rep.Errors, rep.FirstError, rep.BodyBytes)
	}

	cm := quick(base + "/hang/")
	cm.Timeout = 200 * time.Millisecond
	rep, err = loadtest.RunHTTP(context.Background(), loadtest.HTTPConfig{Common: cm, Conns: 2, Requests: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 0 || rep.Timeouts != 4 || rep.Errors != 0 {
		t.Errorf("hang: completed %d timeouts %d errors %d (%q); want 0 4 0", rep.Completed, rep.Timeouts, rep.Errors, rep.FirstError)
	}
}

func TestConnectCountsFailuresTimeoutsAndCloseErrors(t *testing.T) {
	var n atomic.Int64
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	mux := http.NewServeMux()
	mux.HandleFunc("/mixed/", func(w http.ResponseWriter, r *http.Request) {
		switch i := n.Add(1); {
		case i%5 == 0:
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		case i%7 == 0:
			<-r.Context().Done() // never answers: the client gives up
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			if _, _, err := c.Read(context.Background()); err != nil {
				return // the client's close, answered by Read
			}
		}
	})
	mux.HandleFunc("/deaf/", func(w http.ResponseWriter, r *http.Request) {
		// Counted before the handshake answers, so that the test's
		// cleanup, which follows the last answer, waits for it.
		wg.Add(1)
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			wg.Done()
			return
		}
		// Never reads, so the client's close frame goes unanswered.
		go func() { defer wg.Done(); time.Sleep(time.Second); c.CloseNow() }()
	})
	ws, _ := startServer(t, mux)

	cm := quick(ws + "/mixed/")
	cm.Timeout = 300 * time.Millisecond
	rep, err := loadtest.RunConnect(context.Background(), loadtest.ConnectConfig{Common: cm, Conns: 30, Concurrency: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Requests 5, 10, …, 30 are refused; 7, 14, 21, 28 hang.
	if rep.Completed != 20 || rep.Failed != 6 || rep.Timeouts != 4 || rep.CloseErrors != 0 {
		t.Errorf("completed %d failed %d timeouts %d close errors %d; want 20 6 4 0", rep.Completed, rep.Failed, rep.Timeouts, rep.CloseErrors)
	}
	if !strings.Contains(rep.FirstError, "503") || rep.Handshake.Count != 20 {
		t.Errorf("first error %q, %d handshake samples; want the 503 named and 20 samples", rep.FirstError, rep.Handshake.Count)
	}
	if rep.Failure() != nil {
		t.Errorf("Failure() = %v; failed handshakes are measurements in this mode", rep.Failure())
	}

	cm = quick(ws + "/deaf/")
	cm.Timeout = 200 * time.Millisecond
	rep, err = loadtest.RunConnect(context.Background(), loadtest.ConnectConfig{Common: cm, Conns: 4, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed != 4 || rep.CloseErrors != 4 || rep.Close.Count != 0 || rep.FirstCloseError == "" {
		t.Errorf("deaf server: completed %d, close errors %d (%q), %d close samples; want 4, 4, 0", rep.Completed, rep.CloseErrors, rep.FirstCloseError, rep.Close.Count)
	}
}

func TestConnectStopsAtTheCeiling(t *testing.T) {
	ref := &loadtest.Reference{}
	ws, _ := startReference(t, ref)
	cm := quick(ws + "/echo/")
	cm.Duration = 300 * time.Millisecond
	rep, err := loadtest.RunConnect(context.Background(), loadtest.ConnectConfig{Common: cm, Conns: 1 << 30, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Completed == 0 || rep.Failed != 0 || rep.Timeouts != 0 || !strings.Contains(rep.StoppedEarly, "-duration ceiling (300ms)") {
		t.Errorf("completed %d failed %d timeouts %d stopped early %q; want some completed, no failures and the ceiling named",
			rep.Completed, rep.Failed, rep.Timeouts, rep.StoppedEarly)
	}
}
