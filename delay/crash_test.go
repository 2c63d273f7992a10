package delay_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
	"go.uber.org/goleak"
)

// The crash test runs the delay server as a separate process (this test
// binary, re-executed with DELAY_CRASH_SERVER=1), on a Redis layer shared
// with the test, and kills it with SIGKILL at random moments.
const (
	envServer      = "DELAY_CRASH_SERVER"
	envDB          = "DELAY_CRASH_DB"
	envTable       = "DELAY_CRASH_TABLE"
	envRedis       = "DELAY_CRASH_REDIS"
	envLayerPrefix = "DELAY_CRASH_LAYER_PREFIX"
	crashCapacity  = 100_000
)

func TestMain(m *testing.M) {
	if os.Getenv(envServer) == "1" {
		os.Exit(crashServerMain())
	}
	goleak.VerifyTestMain(m)
}

// crashServerMain is the delay-server process of the crash test.
func crashServerMain() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l, err := redislayer.New(ctx, redislayer.Config{
		Hosts:    []string{os.Getenv(envRedis)},
		Prefix:   os.Getenv(envLayerPrefix),
		Capacity: crashCapacity,
		Logger:   log,
	})
	if err != nil {
		log.Error("crash server: layer", "error", err)
		return 2
	}
	defer l.Close()
	store, err := delay.OpenStore(ctx, delay.StoreConfig{URL: os.Getenv(envDB), TablePrefix: os.Getenv(envTable), Logger: log})
	if err != nil {
		log.Error("crash server: store", "error", err)
		return 2
	}
	defer store.Close()
	// A short hold: messages taken by a killed server come back soon.
	if err := (&delay.Server{Layer: l, Store: store, Logger: log, IntakeHold: 2 * time.Second}).Run(ctx); err != nil {
		log.Error("crash server: run", "error", err)
		return 1
	}
	return 0
}

// serverProcess is one run of the delay-server process.
type serverProcess struct {
	cmd *exec.Cmd
	log *bytes.Buffer
}

type crashRig struct {
	t    *testing.T
	env  []string
	mu   sync.Mutex
	cur  *serverProcess
	logs []*bytes.Buffer
}

func (r *crashRig) start() {
	r.t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), r.env...)
	var buf bytes.Buffer
	cmd.Stdout = &syncWriter{w: &buf}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start delay server: %v", err)
	}
	r.mu.Lock()
	r.cur = &serverProcess{cmd: cmd, log: &buf}
	r.logs = append(r.logs, &buf)
	r.mu.Unlock()
}

// kill sends SIGKILL to the running server process (only the one this test
// started) and waits for it.
func (r *crashRig) kill() {
	r.mu.Lock()
	p := r.cur
	r.cur = nil
	r.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// stop ends the running server gracefully.
func (r *crashRig) stop() {
	r.mu.Lock()
	p := r.cur
	r.cur = nil
	r.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
		r.t.Error("delay server did not stop within 20 s of SIGTERM")
	}
}

func (r *crashRig) dumpLogs() {
	for i, b := range r.logs {
		s := b.String()
		if len(s) > 4000 {
			s = "...\n" + s[len(s)-4000:]
		}
		r.t.Logf("server run %d log:\n%s", i+1, s)
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

type arrival struct {
	n  int64
	id string
}

// TestCrashKillsLoseNothing schedules messages due over a few seconds with
// SendConfirmed, kills the delay-server process with SIGKILL at random
// moments and restarts it, and checks that every message arrives, that
// duplicates carry the ID of the original, and that there are few of them
// (only a batch in flight at a kill can repeat). The normal run uses 1,000
// messages and 2 kills; DELAY_CRASH_FULL=1 uses 10,000 messages and 6 kills.
func TestCrashKillsLoseNothing(t *testing.T) {
	n, kills := 1000, 2
	if os.Getenv("DELAY_CRASH_FULL") == "1" {
		n, kills = 10_000, 6
	}
	redisURL := testenv.RedisURL(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			sc := b.config(t)
			if b.name == "SQLite" {
				sc.URL = "sqlite://" + filepath.Join(t.TempDir(), "crash.db")
			}
			crashTest(t, redisURL, sc, n, kills, false)
		})
	}
}

// TestCrashKillsPlainSend is TestCrashKillsLoseNothing with plain Send,
// which gets no confirmation and never resends: nothing is lost because the
// server receives "asgi.delay" held by the Redis layer and acknowledges
// only after its commit (Server.IntakeHold). The normal run uses 1,000
// messages and 3 kills; DELAY_CRASH_FULL=1 uses 10,000 messages and 20
// kills:
//
//	DELAY_CRASH_FULL=1 go test -run TestCrashKillsPlainSend/SQLite -v ./delay/
func TestCrashKillsPlainSend(t *testing.T) {
	n, kills := 1000, 3
	if os.Getenv("DELAY_CRASH_FULL") == "1" {
		n, kills = 10_000, 20
	}
	redisURL := testenv.RedisURL(t)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			sc := b.config(t)
			if b.name == "SQLite" {
				sc.URL = "sqlite://" + filepath.Join(t.TempDir(), "crash.db")
			}
			crashTest(t, redisURL, sc, n, kills, true)
		})
	}
}

// crashTest sends n messages through the delay server while killing it
// kills times; with plain, with Send instead of SendConfirmed.
func crashTest(t *testing.T, redisURL string, sc delay.StoreConfig, n, kills int, plain bool) {
	layerPrefix := testenv.Prefix("delaycrash")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	l, err := redislayer.New(ctx, redislayer.Config{Hosts: []string{redisURL}, Prefix: layerPrefix, Capacity: crashCapacity, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if f, ok := any(l).(channels.Flusher); ok {
			_ = f.Flush(context.Background())
		}
		l.Close()
	}()
	// Make sure the tables exist with this prefix before the first server
	// (and so that cleanup can drop them).
	s0, err := delay.OpenStore(ctx, sc)
	if err != nil {
		t.Fatal(err)
	}
	s0.Close()

	rig := &crashRig{t: t, env: []string{
		envServer + "=1", envDB + "=" + sc.URL, envTable + "=" + sc.TablePrefix,
		envRedis + "=" + redisURL, envLayerPrefix + "=" + layerPrefix,
	}}
	rig.start()
	defer rig.kill()

	// The consumer: everything that arrives on crash.out.
	var (
		amu      sync.Mutex
		arrivals []arrival
		rctx, rc = context.WithCancel(ctx)
		rwg      sync.WaitGroup
	)
	defer rc()
	rwg.Go(func() {
		for {
			_, c, err := l.Receive(rctx, "crash.out")
			if err != nil {
				if rctx.Err() == nil {
					t.Errorf("receive: %v", err)
				}
				return
			}
			i, _ := c.Int("n")
			amu.Lock()
			arrivals = append(arrivals, arrival{i, c.String(delay.IDKey)})
			amu.Unlock()
		}
	})

	// The producers: every message confirmed, due 0.5 to 3.5 s after it
	// is sent.
	ids := make([]string, n)
	var pwg sync.WaitGroup
	next := make(chan int)
	for range 32 {
		pwg.Go(func() {
			for i := range next {
				after := 500*time.Millisecond + time.Duration(rand.IntN(3000))*time.Millisecond
				pctx, pcancel := context.WithTimeout(ctx, 2*time.Minute)
				var (
					id  string
					err error
				)
				if plain {
					err = delay.Send(pctx, l, "crash.out", channels.Content{"n": i}, after)
				} else {
					id, err = delay.SendConfirmed(pctx, l, "crash.out", channels.Content{"n": i}, after)
				}
				pcancel()
				if err != nil {
					t.Errorf("message %d: %v", i, err)
				}
				ids[i] = id
			}
		})
	}
	start := time.Now()
	go func() {
		for i := range n {
			next <- i
		}
		close(next)
	}()

	// The killer: SIGKILL at random moments while messages are sent,
	// stored and delivered; restart after a short pause.
	for k := range kills {
		time.Sleep(time.Duration(200+rand.IntN(1200)) * time.Millisecond)
		rig.kill()
		t.Logf("kill %d at %s", k+1, time.Since(start).Round(time.Millisecond))
		time.Sleep(time.Duration(50+rand.IntN(400)) * time.Millisecond)
		rig.start()
	}
	pwg.Wait()
	t.Logf("all %d messages sent after %s", n, time.Since(start).Round(time.Millisecond))

	// Wait for everything to arrive.
	deadline := time.Now().Add(90 * time.Second)
	for {
		amu.Lock()
		distinct := map[int64]bool{}
		for _, a := range arrivals {
			distinct[a.n] = true
		}
		amu.Unlock()
		if len(distinct) == n {
			break
		}
		if time.Now().After(deadline) {
			rig.dumpLogs()
			t.Fatalf("only %d of %d messages arrived: %d lost", len(distinct), n, n-len(distinct))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // late duplicates, if any
	rig.stop()
	rc()
	rwg.Wait()

	copies := make(map[int64]int, n)
	duplicates := 0
	for _, a := range arrivals {
		copies[a.n]++
		if copies[a.n] > 1 {
			duplicates++
		}
		if a.n < 0 || a.n >= int64(n) {
			t.Errorf("unexpected message n=%d", a.n)
			continue
		}
		if !plain && a.id != ids[a.n] {
			t.Errorf("message %d arrived with ID %q, SendConfirmed returned %q", a.n, a.id, ids[a.n])
		}
	}
	t.Logf("%d messages, %d kills: %d arrivals, 0 lost, %d duplicates", n, kills, len(arrivals), duplicates)
	// Only the batch being sent at a kill can be sent again, and the
	// intake batch stored but not yet acknowledged (delivered before it
	// came back).
	if limit := kills * (delay.DefaultBatchSize + delay.DefaultIntakeBatch); duplicates > limit {
		t.Errorf("%d duplicates for %d kills, more than a send and an intake batch (%d) per kill", duplicates, kills, delay.DefaultBatchSize+delay.DefaultIntakeBatch)
	}
	if t.Failed() {
		rig.dumpLogs()
	}
}
