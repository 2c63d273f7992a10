package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/jackc/pgx/v5"

	"github.com/gochannels/channels/internal/testenv"
)

// Crash test sizes: crashRows rows, each created once and then updated
// until crashChanges changes are committed in all.
const (
	crashRows    = 100
	crashChanges = 10_000
	crashWriters = 4
)

// The binding relay of the board, as the runbinding process, is killed
// with SIGKILL again and again while 10,000 changes are committed to
// PostgreSQL by four writers; gateway and worker run as processes too,
// over Redis. One admin socket must receive every change; a change may
// arrive twice only shortly after a kill, and then with the same change
// id; and the changes of one row arrive in commit order.
func TestBoardRelayCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the board binary and kills its relay repeatedly")
	}
	layerURL := redisLayerURL(t)
	// Room for a burst of a whole batch on the socket's reply channel.
	layerURL += "&capacity=20000"
	dbURL, _ := pgSchema(t)
	bin := testenv.GoBuild(t, "./examples/board")
	t.Setenv("BOARD_DATABASE", dbURL)
	t.Setenv("CHANNELS_LAYER", layerURL)
	port := testenv.FreePort(t)
	gw := testenv.StartProcess(t, "", "gateway", bin, "gateway", "-p", fmt.Sprint(port), "-v", "0")
	w := testenv.StartProcess(t, "", "worker", bin, "runworker", "--threads", "2", "-v", "0")
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	testenv.WaitHTTP(t, base, 20*time.Second, func() string { return gw.String() + w.String() })

	rig := &relayRig{t: t, bin: bin}
	defer rig.stop()
	rig.start()

	sub := dialBoard(t, base, "ada")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	// Room for every change and its repeats: the reader never waits for
	// the checks (a socket that stops reading is closed by the gateway).
	frames := make(chan received, 4*crashChanges)
	go sub.read(ctx, frames)

	// Writers, each on its own rows and connection; every change writes a
	// body no other change writes: "r<row>-<n>".
	writers := make([]*crashWriter, crashWriters)
	for wi := range writers {
		conn, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		writers[wi] = &crashWriter{conn: conn, first: wi * crashRows / crashWriters, rows: crashRows / crashWriters}
	}
	write := func(changes int, pace time.Duration) <-chan error {
		errs := make(chan error, len(writers))
		var wg sync.WaitGroup
		for _, w := range writers {
			wg.Go(func() {
				if err := w.write(ctx, changes/len(writers), pace); err != nil {
					errs <- err
				}
			})
		}
		go func() { wg.Wait(); close(errs) }()
		return errs
	}
	c := &crashCollector{t: t, frames: frames, sub: sub, bodies: map[string]seenChange{}, lastSeq: map[string]int{}}

	// Phase 1: 10,000 changes while the killer sends SIGKILL to the relay
	// every 200-600 ms and starts another at once. The writers take at
	// least 4 s (250 transactions each, 16 ms apart at the most), so that
	// a fast machine sees kills too.
	writeErrs := write(crashChanges, 16*time.Millisecond)
	var kills []time.Time
	killerDone := make(chan struct{})
	stopKiller := make(chan struct{})
	go func() {
		defer close(killerDone)
		for {
			select {
			case <-stopKiller:
				return
			case <-time.After(time.Duration(200+rand.IntN(400)) * time.Millisecond):
			}
			kills = append(kills, rig.kill())
			rig.start()
		}
	}()
	for err := range writeErrs {
		t.Fatalf("writer: %v", err)
	}
	close(stopKiller)
	<-killerDone
	dups := c.collect(crashChanges, 90*time.Second, rig, 1)
	if len(kills) < 3 {
		t.Errorf("only %d kills happened while the changes were committed; the test proves little", len(kills))
	}
	// Every duplicate comes shortly after a kill: the relay that replaced
	// the killed one resent what the killed one had sent but not yet
	// deleted from the outbox.
	const window = 10 * time.Second
	for _, at := range dups {
		near := false
		for _, k := range kills {
			if !at.Before(k) && at.Sub(k) < window {
				near = true
				break
			}
		}
		if !near {
			t.Errorf("a duplicate arrived at %v, not within %v after any of the %d kills", at.Format(time.StampMilli), window, len(kills))
			break
		}
	}
	t.Logf("phase 1: %d changes delivered, %d duplicates (same change id), %d SIGKILLs of the relay", crashChanges, len(dups), len(kills))

	// Phase 2: with the relay left alone, 1,000 more changes arrive once
	// each (phase 1's last resends may still arrive meanwhile).
	for err := range write(1000, 0) {
		t.Fatalf("writer: %v", err)
	}
	if dups := c.collect(crashChanges+1000, 30*time.Second, rig, 2); len(dups) > 0 {
		t.Errorf("%d duplicates of phase 2's changes without a crash", len(dups))
	}
	if len(c.orderErrs) > 0 {
		t.Errorf("%d changes out of commit order, first: %s", len(c.orderErrs), c.orderErrs[0])
	}
}

// crashWriter commits changes to its own rows: it creates them with its
// first changes, then updates them in turn, in transactions of ten started
// at least pace apart.
type crashWriter struct {
	conn        *pgx.Conn
	first, rows int
	ids         []int64
	n           int // changes committed
}

func (w *crashWriter) write(ctx context.Context, changes int, pace time.Duration) error {
	next := time.Now()
	for end := w.n + changes; w.n < end; {
		time.Sleep(time.Until(next))
		next = next.Add(pace)
		tx, err := w.conn.Begin(ctx)
		if err != nil {
			return err
		}
		for k := 0; k < 10 && w.n < end; k++ {
			i, seq := w.n%w.rows, w.n/w.rows
			body := fmt.Sprintf("r%d-%d", w.first+i, seq)
			if seq == 0 {
				var id int64
				if err := tx.QueryRow(ctx, `INSERT INTO board_items (title, body) VALUES ($1, $2) RETURNING id`, fmt.Sprintf("row %d", w.first+i), body).Scan(&id); err != nil {
					return err
				}
				w.ids = append(w.ids, id)
			} else if _, err := tx.Exec(ctx, `UPDATE board_items SET body = $1 WHERE id = $2`, body, w.ids[i]); err != nil {
				return err
			}
			w.n++
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
	}
	return nil
}

// crashCollector reads the subscriber's payloads and checks them.
type crashCollector struct {
	t         *testing.T
	frames    <-chan received
	sub       *boardSocket
	bodies    map[string]seenChange
	lastSeq   map[string]int // pk -> last new change's sequence number
	orderErrs []string
}

type seenChange struct {
	id    int64 // change id
	phase int
}

// collect reads until want distinct changes have arrived in all, for at
// most d, and returns the arrival times of the duplicates it read of the
// changes first seen in phase.
func (c *crashCollector) collect(want int, d time.Duration, rig *relayRig, phase int) []time.Time {
	c.t.Helper()
	var dups []time.Time
	deadline := time.After(d)
	for len(c.bodies) < want {
		select {
		case f, ok := <-c.frames:
			if !ok {
				c.t.Fatalf("the socket closed after %d of %d changes: %v", len(c.bodies), want, c.sub.err)
			}
			p := f.payload
			body := p.Data.Body
			if prev, dup := c.bodies[body]; dup {
				if prev.id != p.ChangeID {
					c.t.Fatalf("change %q came with change ids %d and %d", body, prev.id, p.ChangeID)
				}
				if prev.phase == phase {
					dups = append(dups, f.at)
				}
				continue
			}
			c.bodies[body] = seenChange{p.ChangeID, phase}
			var row, seq int
			if _, err := fmt.Sscanf(body, "r%d-%d", &row, &seq); err != nil {
				c.t.Fatalf("unexpected body %q (payload %+v)", body, p)
			}
			pk := string(p.PK)
			if last, ok := c.lastSeq[pk]; ok && seq <= last {
				c.orderErrs = append(c.orderErrs, fmt.Sprintf("row %s: change %d after %d", pk, seq, last))
			}
			c.lastSeq[pk] = seq
		case <-deadline:
			c.t.Fatalf("%d of %d changes reached the socket within %v\nlast relay:\n%s", len(c.bodies), want, d, rig.lastLog())
		}
	}
	return dups
}

// relayRig runs the runbinding process and kills it.
type relayRig struct {
	t    *testing.T
	bin  string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *testenv.Output
}

func (r *relayRig) start() {
	cmd := exec.Command(r.bin, "runbinding", "-v", "0")
	var out testenv.Output
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		r.t.Errorf("start runbinding: %v", err)
		return
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.mu.Lock()
	r.cmd, r.done, r.log = cmd, done, &out
	r.mu.Unlock()
}

// kill sends SIGKILL to the running relay (the process this rig started)
// and waits for it to end; it returns when the signal was sent.
func (r *relayRig) kill() time.Time {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	at := time.Now()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-done
	}
	return at
}

// stop ends the running relay with SIGTERM, then SIGKILL.
func (r *relayRig) stop() {
	r.mu.Lock()
	cmd, done := r.cmd, r.done
	r.cmd = nil
	r.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (r *relayRig) lastLog() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.log == nil {
		return ""
	}
	return r.log.String()
}

// boardPayload is a binding message's payload as the board sends it.
type boardPayload struct {
	Action   string          `json:"action"`
	PK       json.RawMessage `json:"pk"`
	ChangeID int64           `json:"change_id"`
	Error    string          `json:"error"`
	Data     struct {
		Title     string `json:"title"`
		Body      string `json:"body"`
		AdminOnly bool   `json:"admin_only"`
	} `json:"data"`
}

type received struct {
	payload boardPayload
	at      time.Time
}

// boardSocket is a logged-in user's socket to the board, read by a
// goroutine.
type boardSocket struct {
	conn *websocket.Conn
	err  error
}

// dialBoard logs user in at base (an http:// URL ending in "/") and opens
// the board's socket with the session cookie and a matching Origin.
func dialBoard(t testing.TB, base, user string) *boardSocket {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := hc.PostForm(base+"login", url.Values{"name": {user}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login %s: %s", user, resp.Status)
	}
	return dialWithJar(t, base, jar)
}

func dialWithJar(t testing.TB, base string, jar http.CookieJar) *boardSocket {
	t.Helper()
	u, _ := url.Parse(base)
	h := http.Header{}
	h.Set("Origin", strings.TrimSuffix(base, "/"))
	var cookies []string
	for _, c := range jar.Cookies(u) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	h.Set("Cookie", strings.Join(cookies, "; "))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+u.Host+SocketPath, &websocket.DialOptions{HTTPHeader: h})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial the board's socket: %v (status %d)", err, status)
	}
	conn.SetReadLimit(1 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	return &boardSocket{conn: conn}
}

// read sends the socket's payloads to out, stamped with their arrival,
// until the socket or ctx ends; then it closes out.
func (s *boardSocket) read(ctx context.Context, out chan<- received) {
	defer close(out)
	for {
		_, b, err := s.conn.Read(ctx)
		if err != nil {
			s.err = err
			return
		}
		at := time.Now()
		var env struct {
			Stream  string       `json:"stream"`
			Payload boardPayload `json:"payload"`
		}
		if err := json.Unmarshal(b, &env); err != nil || env.Stream != Stream {
			s.err = fmt.Errorf("unexpected frame %s: %v", bytes.TrimSpace(b), err)
			return
		}
		out <- received{env.Payload, at}
	}
}
