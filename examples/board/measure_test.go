package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/internal/loadtest"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/session"
)

// The measurement's knobs, from the environment:
//
//	BOARD_MEASURE=1                                    run it
//	BOARD_MEASURE_RUNS=1000:20,1000:100,1000:1000,1:1000,1000:0
//	                                                   runs, each sockets:rate — that many
//	                                                   sockets, all in one group, and changes
//	                                                   per second (0: as fast as eight writers
//	                                                   commit, a throughput run)
//	BOARD_MEASURE_SECONDS=5                            length of each paced run
//	BOARD_MEASURE_BURST=2000                           changes of each unpaced run
const measureEnv = "BOARD_MEASURE"

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive integer", name, v)
	}
	return n
}

// TestMeasureBinding measures, on SQLite and PostgreSQL side by side, how
// fast committed changes reach one group of sockets and how late:
// runserver (gateway, worker and binding relay in one process, in-memory
// layer) serves the sockets of the admin, and the application commits
// changes to board_items through its own database handle — paced
// (commit-to-socket latency p50/p99 over every delivery) or as fast as
// eight writers go (changes/s from the first commit to the last delivery on
// every socket). Every run has fresh sockets. The sockets, the writers and
// the server share the machine; a run whose deliveries stall for 10 s
// counts what is missing (sockets the gateway closed as too slow, 1008,
// lose the rest).
//
//	BOARD_MEASURE=1 go test -run TestMeasureBinding -v -timeout 30m ./examples/board/
func TestMeasureBinding(t *testing.T) {
	if os.Getenv(measureEnv) != "1" {
		t.Skip("set " + measureEnv + "=1 to measure commit-to-socket delivery")
	}
	seconds := envInt(t, "BOARD_MEASURE_SECONDS", 5)
	burst := envInt(t, "BOARD_MEASURE_BURST", 2000)
	runs := os.Getenv("BOARD_MEASURE_RUNS")
	if runs == "" {
		runs = "1000:20,1000:100,1000:1000,1:1000,1000:0"
	}
	type spec struct{ sockets, rate int }
	var specs []spec
	for _, r := range strings.Split(runs, ",") {
		var sp spec
		if _, err := fmt.Sscanf(strings.TrimSpace(r), "%d:%d", &sp.sockets, &sp.rate); err != nil || sp.sockets < 1 || sp.rate < 0 {
			t.Fatalf("BOARD_MEASURE_RUNS: %q is not sockets:rate", r)
		}
		specs = append(specs, sp)
	}
	dbs := []struct{ name, url string }{{"SQLite", filepath.Join(t.TempDir(), "board.db")}}
	if os.Getenv("DATABASE_URL") != "" || testenv.Required() {
		u, _ := pgSchema(t)
		dbs = append(dbs, struct{ name, url string }{"PostgreSQL", u})
	}
	type row struct {
		db, run             string
		sockets             int
		changes, deliveries int64
		missing             int64
		rate                float64
		lat                 loadtest.Latency
	}
	var rows []row
	for _, sp := range specs {
		for _, d := range dbs {
			m := startMeasureServer(t, d.url)
			subs := m.dial(t, sp.sockets)
			n, name := burst, "unpaced"
			if sp.rate > 0 {
				n, name = sp.rate*seconds, fmt.Sprintf("paced %d/s", sp.rate)
			}
			r := m.run(t, subs, sp.rate, n)
			for _, s := range subs {
				s.conn.CloseNow()
			}
			m.stop()
			rows = append(rows, row{d.name, name, sp.sockets, r.changes, r.deliveries, r.missing, r.rate, r.lat})
			t.Logf("%s, %d sockets, %s: %d/%d deliveries, %.0f changes/s, p50 %.1f ms, p99 %.1f ms",
				d.name, sp.sockets, name, r.deliveries, r.changes*int64(sp.sockets), r.rate, r.lat.P50, r.lat.P99)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "commit-to-socket, one group (runserver in-process, in-memory layer):\n")
	fmt.Fprintf(&b, "%-10s %7s %-12s %8s %10s %9s %10s %9s %9s %9s\n", "database", "sockets", "run", "changes", "deliveries", "missing", "changes/s", "p50 ms", "p99 ms", "max ms")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-10s %7d %-12s %8d %10d %9d %10.0f %9.1f %9.1f %9.1f\n", r.db, r.sockets, r.run, r.changes, r.deliveries, r.missing, r.rate, r.lat.P50, r.lat.P99, r.lat.Max)
	}
	t.Log("\n" + b.String())
}

// measureServer is runserver for the board on one database, in this
// process.
type measureServer struct {
	app    *App
	base   string
	cancel context.CancelFunc
	done   chan error
	out    *testenv.Output
	pks    []int64
	cur    atomic.Pointer[runState]
}

// measureSeq is the sequence number of the next change a run commits.
var measureSeq int

// measureWriters is how many goroutines commit changes, one change per
// transaction each: as many as binding.DB's PostgreSQL connections.
const measureWriters = 8

// measureItems is how many items the changes update in turn.
const measureItems = 100

// runState is what the sockets' readers record into during one run.
type runState struct {
	first, n     int
	committed    []atomic.Int64 // unix ns at commit, by change
	hist         loadtest.Histogram
	deliveries   atomic.Int64
	lastDelivery atomic.Int64
}

// record notes the arrival of change seq at now (unix ns).
func (st *runState) record(seq int, now int64) {
	if seq < st.first || seq >= st.first+st.n {
		return
	}
	st.deliveries.Add(1)
	for {
		last := st.lastDelivery.Load()
		if now <= last || st.lastDelivery.CompareAndSwap(last, now) {
			break
		}
	}
	// The commit time is stored once the writer's Exec returns: a
	// delivery can come first. Wait for it.
	c := &st.committed[seq-st.first]
	var at int64
	for at = c.Load(); at == 0; at = c.Load() {
		time.Sleep(100 * time.Microsecond)
	}
	st.hist.Record(time.Duration(now - at))
}

func startMeasureServer(t *testing.T, dbURL string) *measureServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	app, err := Open(ctx, dbURL, session.NewMemoryStore())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	out := &testenv.Output{}
	m := &measureServer{app: app, base: "http://" + addr + "/", cancel: cancel, done: make(chan error, 1), out: out}
	// The in-memory layer's reply channels hold a whole burst.
	c := &cli.App{Router: app.Router(), Bindings: []binding.Registration{app.Items}, Database: app.DB, Stdout: out, Stderr: out}
	go func() {
		m.done <- c.Run(ctx, []string{"runserver", addr, "--nodelay", "-v", "0", "--layer", "memory://?capacity=100000"})
	}()
	testenv.WaitHTTP(t, m.base, 20*time.Second, out.String)
	// The items the changes update in turn.
	for range measureItems {
		if _, err := app.DB.Exec(ctx, `INSERT INTO board_items (title, body) VALUES ('measured', '-1')`); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.read.query(ctx, `SELECT id FROM board_items WHERE title = 'measured' ORDER BY id`, nil, func(s scan) error {
		var id int64
		err := s(&id)
		m.pks = append(m.pks, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

func (m *measureServer) stop() {
	m.cancel()
	<-m.done
	m.app.Close()
}

// dial logs ada in once and opens n sockets with her cookie.
func (m *measureServer) dial(t *testing.T, n int) []*boardSocket {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := hc.PostForm(m.base+"login", url.Values{"name": {"ada"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	subs := make([]*boardSocket, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range subs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			subs[i] = dialWithJar(t, m.base, jar)
			go m.read(subs[i])
		})
	}
	wg.Wait()
	return subs
}

type measureResult struct {
	changes, deliveries, missing int64
	rate                         float64
	lat                          loadtest.Latency
	elapsed                      time.Duration
}

// read hands the changes s receives to the current run, until s closes.
func (m *measureServer) read(s *boardSocket) {
	for {
		_, b, err := s.conn.Read(context.Background())
		if err != nil {
			return
		}
		now := time.Now().UnixNano()
		st := m.cur.Load()
		if st == nil {
			continue
		}
		text := string(b)
		i := strings.Index(text, `"body":"`)
		if i < 0 {
			continue
		}
		rest := text[i+8:]
		if seq, err := strconv.Atoi(rest[:max(strings.IndexByte(rest, '"'), 0)]); err == nil {
			st.record(seq, now)
		}
	}
}

// run commits n changes (UPDATEs of the items' bodies, in turn, to the
// change's sequence number) at rate per second (0: as fast as eight writers
// go) and waits until every socket has them, or until 10 s pass without
// progress.
func (m *measureServer) run(t *testing.T, subs []*boardSocket, rate, n int) measureResult {
	t.Helper()
	ctx := context.Background()
	// Sequence numbers are never reused, so that a change left in the
	// outbox by an earlier run is not counted.
	st := &runState{first: measureSeq, n: n, committed: make([]atomic.Int64, n)}
	measureSeq += n
	m.cur.Store(st)
	defer m.cur.Store(nil)
	start := time.Now()
	var next atomic.Int64
	var writers sync.WaitGroup
	var writeErr atomic.Value
	for range measureWriters {
		writers.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if rate > 0 {
					if d := time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))); d > 0 {
						time.Sleep(d)
					}
				}
				if _, err := m.app.DB.Exec(ctx, `UPDATE board_items SET body = ? WHERE id = ?`, strconv.Itoa(st.first+i), m.pks[i%len(m.pks)]); err != nil {
					writeErr.Store(err)
					return
				}
				st.committed[i].Store(time.Now().UnixNano())
				m.app.DB.Notify()
			}
		})
	}
	writers.Wait()
	if err, _ := writeErr.Load().(error); err != nil {
		t.Fatalf("commit: %v", err)
	}
	want := int64(n) * int64(len(subs))
	for last, idle := st.deliveries.Load(), time.Now(); st.deliveries.Load() < want; time.Sleep(50 * time.Millisecond) {
		if cur := st.deliveries.Load(); cur != last {
			last, idle = cur, time.Now()
		} else if time.Since(idle) > 10*time.Second {
			break
		}
	}
	got := st.deliveries.Load()
	elapsed := time.Duration(st.lastDelivery.Load() - start.UnixNano())
	return measureResult{
		changes: int64(n), deliveries: got, missing: want - got,
		rate:    float64(n) / elapsed.Seconds(),
		lat:     st.hist.Summary(),
		elapsed: elapsed,
	}
}
