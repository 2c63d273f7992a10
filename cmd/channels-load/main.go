// Command channels-load measures a running server end to end over loopback,
// and serves the reference implementation it is compared against.
//
// Usage:
//
//	channels-load echo      -url ws://127.0.0.1:8000/echo/ -c 100 -n 1000 [-size 64] [-pipeline 1]
//	channels-load fanout    -url ws://127.0.0.1:8000/fanout/ -s 500 -m 1000 [-rate R] [-size 64]
//	channels-load idle      -url ws://127.0.0.1:8000/echo/ -c 5000 -pid <server PID> [-hold 10s]
//	channels-load http      -url http://127.0.0.1:8000/http/ -c 50 -n 20000
//	channels-load connect   -url ws://127.0.0.1:8000/echo/ -n 5000 -c 32
//	channels-load reference -addr 127.0.0.1:9000
//	channels-load compare   -a <url> -b <url> <mode> [mode flags]
//
// Every load mode also takes -duration (a ceiling on the whole run, default
// 60s), -timeout (per connection attempt and per wait for an answer, default
// 10s), -progress (interval of the progress lines on stderr, 0 for none),
// -pid (the server's process ID, to report its CPU time and memory; required
// by idle), -json (print the report as one JSON object instead of text) and
// -cpuprofile (the tool's own CPU profile). README.md describes every mode,
// its report and the method.
//
// The target implements GET /http/ (200, "ok"), WebSocket /echo/ (every
// text frame sent back) and WebSocket /fanout/<room>/ (every frame
// broadcast to the room, sender included); the reference mode serves exactly
// that with net/http and coder/websocket alone.
//
// Exit status: 0 when the run completed; 1 when the target could not be
// reached, some connections could not be opened (the report is printed
// first), or the run was interrupted; 2 for a usage error. Errors, timeouts
// and lost messages are measurements: they are in the report, not in the
// exit status; so are failed handshakes in connect mode, which measures them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/gochannels/channels/internal/loadtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// runner runs a configured mode against one target.
type runner func(ctx context.Context, c loadtest.Common) (loadtest.Report, error)

// mode is a load subcommand: its flags and how to run it.
type mode struct {
	name, usage, defaultURL string
	// flags registers the mode's own flags on fs and returns the runner
	// that reads them once fs is parsed.
	flags func(fs *flag.FlagSet) runner
}

var modes = []mode{
	{
		name: "echo", defaultURL: "ws://127.0.0.1:8000/echo/",
		usage: "C connections each make N round trips (send a frame, wait for its echo)",
		flags: func(fs *flag.FlagSet) runner {
			c := fs.Int("c", 100, "connections")
			n := fs.Int("n", 1000, "round trips per connection")
			size := fs.Int("size", 64, "frame size in bytes")
			pipeline := fs.Int("pipeline", 1, "frames in flight per connection")
			return func(ctx context.Context, cm loadtest.Common) (loadtest.Report, error) {
				return loadtest.RunEcho(ctx, loadtest.EchoConfig{Common: cm, Conns: *c, Messages: *n, Size: *size, Pipeline: *pipeline})
			}
		},
	},
	{
		name: "fanout", defaultURL: "ws://127.0.0.1:8000/fanout/",
		usage: "S subscribers join a fresh room, then one publisher sends M frames to it",
		flags: func(fs *flag.FlagSet) runner {
			s := fs.Int("s", 500, "subscribers")
			m := fs.Int("m", 1000, "frames the publisher sends")
			rate := fs.Float64("rate", 0, "publisher rate in frames/s (0: as fast as the connection takes them)")
			size := fs.Int("size", 64, "frame size in bytes")
			grace := fs.Duration("grace", loadtest.DefaultGrace, "how long deliveries may stall after the last send before the rest count as lost")
			room := fs.String("room", "", "room name (default: a random one per run)")
			return func(ctx context.Context, cm loadtest.Common) (loadtest.Report, error) {
				return loadtest.RunFanout(ctx, loadtest.FanoutConfig{Common: cm, Subscribers: *s, Messages: *m, Rate: *rate, Size: *size, Grace: *grace, Room: *room})
			}
		},
	},
	{
		name: "idle", defaultURL: "ws://127.0.0.1:8000/echo/",
		usage: "open C idle connections in batches and report the server's memory per connection (-pid required)",
		flags: func(fs *flag.FlagSet) runner {
			c := fs.Int("c", 5000, "connections")
			hold := fs.Duration("hold", loadtest.DefaultHold, "settle period with all connections open")
			batch := fs.Int("batch", loadtest.DefaultBatch, "connections opened at once")
			ramp := fs.Duration("ramp", loadtest.DefaultRamp, "pause between batches")
			return func(ctx context.Context, cm loadtest.Common) (loadtest.Report, error) {
				cfg := loadtest.IdleConfig{Common: cm, Conns: *c, Hold: *hold, Batch: *batch, Ramp: *ramp}
				if cm.Progress != nil {
					cfg.Warn = func(s string) { fmt.Fprintf(cm.Progress, "channels-load idle: warning: %s\n", s) }
				}
				if *ramp == 0 {
					cfg.Ramp = -1 // no pause, as asked
				}
				return loadtest.RunIdle(ctx, cfg)
			}
		},
	},
	{
		name: "connect", defaultURL: "ws://127.0.0.1:8000/echo/",
		usage: "open N WebSocket connections, C handshakes in flight, closing each once open: connects/s",
		flags: func(fs *flag.FlagSet) runner {
			n := fs.Int("n", 5000, "connections to open and close in all")
			c := fs.Int("c", 32, "handshakes in flight at once")
			return func(ctx context.Context, cm loadtest.Common) (loadtest.Report, error) {
				return loadtest.RunConnect(ctx, loadtest.ConnectConfig{Common: cm, Conns: *n, Concurrency: *c})
			}
		},
	},
	{
		name: "http", defaultURL: "http://127.0.0.1:8000/http/",
		usage: "N GET requests over C keep-alive connections",
		flags: func(fs *flag.FlagSet) runner {
			c := fs.Int("c", 50, "keep-alive connections")
			n := fs.Int("n", 20000, "requests in all")
			return func(ctx context.Context, cm loadtest.Common) (loadtest.Report, error) {
				return loadtest.RunHTTP(ctx, loadtest.HTTPConfig{Common: cm, Conns: *c, Requests: *n})
			}
		},
	},
}

func findMode(name string) (mode, bool) {
	for _, m := range modes {
		if m.name == name {
			return m, true
		}
	}
	return mode{}, false
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: channels-load <mode> [flags]\n\nmodes:\n")
	for _, m := range modes {
		fmt.Fprintf(w, "  %-10s %s\n", m.name, m.usage)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "reference", "serve the protocol with net/http + coder/websocket and an in-process hub (the ceiling)")
	fmt.Fprintf(w, "  %-10s %s\n", "compare", "run one mode against two URLs back to back and print both and the ratios")
	fmt.Fprintf(w, "\nrun 'channels-load <mode> -h' for a mode's flags\n")
}

// run is the whole command; main only adds the process around it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return exitOK
	case "reference":
		return runReference(ctx, args[1:], stdout, stderr)
	case "compare":
		return runCompare(ctx, args[1:], stdout, stderr)
	}
	m, ok := findMode(args[0])
	if !ok {
		fmt.Fprintf(stderr, "channels-load: unknown mode %q\n\n", args[0])
		usage(stderr)
		return exitUsage
	}
	fs := flag.NewFlagSet("channels-load "+m.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", m.defaultURL, "endpoint under test")
	pid := fs.Int("pid", 0, "process ID of the server, to report its CPU time and memory")
	cf := commonFlags(fs)
	runMode := m.flags(fs)
	if code, done := parse(fs, args[1:]); done {
		return code
	}
	cm := cf.common(stderr)
	cm.URL, cm.ServerPID = *url, *pid
	stopProfile, ok := cf.profile(stderr)
	if !ok {
		return exitFailure
	}
	rep, err := runMode(ctx, cm)
	stopProfile()
	if err != nil {
		return fail(stderr, m.name, err)
	}
	return finish(ctx, stdout, stderr, m.name, rep, *cf.json)
}

// commonOpts are the flags every load mode shares besides -url and -pid.
type commonOpts struct {
	duration, timeout, progress *time.Duration
	json                        *bool
	cpuProfile                  *string
}

func commonFlags(fs *flag.FlagSet) commonOpts {
	return commonOpts{
		duration:   fs.Duration("duration", loadtest.DefaultDuration, "ceiling on the whole run, connecting included"),
		timeout:    fs.Duration("timeout", loadtest.DefaultTimeout, "limit on each connection attempt and each wait for an answer"),
		progress:   fs.Duration("progress", loadtest.DefaultProgressEvery, "interval of progress lines on stderr (0: none)"),
		json:       fs.Bool("json", false, "print the report as one JSON object"),
		cpuProfile: fs.String("cpuprofile", "", "write the tool's own CPU profile to this file (to check that the client is not the bottleneck)"),
	}
}

// profile starts the CPU profile when -cpuprofile is set; the returned
// function stops it.
func (o commonOpts) profile(stderr io.Writer) (stop func(), ok bool) {
	if *o.cpuProfile == "" {
		return func() {}, true
	}
	f, err := os.Create(*o.cpuProfile)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		fmt.Fprintf(stderr, "channels-load: -cpuprofile: %v\n", err)
		return nil, false
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, true
}

func (o commonOpts) common(stderr io.Writer) loadtest.Common {
	cm := loadtest.Common{Duration: *o.duration, Timeout: *o.timeout, ProgressEvery: *o.progress}
	if *o.progress > 0 {
		cm.Progress = stderr
	}
	return cm
}

// parse parses flags and reports whether the command is done (help shown or
// a usage error) and with which status.
func parse(fs *flag.FlagSet, args []string) (int, bool) {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK, true
	case err != nil:
		return exitUsage, true
	case fs.NArg() > 0:
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return exitUsage, true
	}
	return 0, false
}

// fail prints an error that stopped a run before it produced a report.
func fail(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "channels-load %s: %v\n", name, err)
	if errors.Is(err, loadtest.ErrInvalidConfig) {
		return exitUsage
	}
	return exitFailure
}

// report is anything finish can print.
type report interface {
	WriteText(w io.Writer) error
	Failure() error
}

// finish prints the report and turns its failure, or an interruption, into
// the exit status.
func finish(ctx context.Context, stdout, stderr io.Writer, name string, rep report, asJSON bool) int {
	var err error
	if asJSON {
		err = json.NewEncoder(stdout).Encode(rep)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "channels-load %s: writing the report: %v\n", name, err)
		return exitFailure
	}
	if err := rep.Failure(); err != nil {
		fmt.Fprintf(stderr, "channels-load %s: %v\n", name, err)
		return exitFailure
	}
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "channels-load %s: interrupted\n", name)
		return exitFailure
	}
	return exitOK
}

// runCompare runs one mode against two targets and prints both reports and
// the ratios A/B.
func runCompare(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("channels-load compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	urlA := fs.String("a", "", "URL of target A (e.g. the Channels server)")
	urlB := fs.String("b", "", "URL of target B (e.g. the reference server)")
	nameA := fs.String("a-name", "A", "label of target A")
	nameB := fs.String("b-name", "B", "label of target B")
	pidA := fs.Int("a-pid", 0, "process ID of target A's server")
	pidB := fs.Int("b-pid", 0, "process ID of target B's server")
	pause := fs.Duration("pause", 2*time.Second, "pause between the two runs")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: channels-load compare -a URL -b URL [-a-name N] [-b-name N] [-a-pid P -b-pid P] <mode> [mode flags]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *urlA == "" || *urlB == "" || fs.NArg() == 0 {
		fmt.Fprintf(stderr, "channels-load compare: -a, -b and a mode are required\n")
		fs.Usage()
		return exitUsage
	}
	m, ok := findMode(fs.Arg(0))
	if !ok {
		fmt.Fprintf(stderr, "channels-load compare: unknown mode %q\n", fs.Arg(0))
		return exitUsage
	}
	if m.name == "idle" && (*pidA == 0 || *pidB == 0) {
		fmt.Fprintf(stderr, "channels-load compare: idle measures the servers' memory: -a-pid and -b-pid are required\n")
		return exitUsage
	}
	mfs := flag.NewFlagSet("channels-load compare "+m.name, flag.ContinueOnError)
	mfs.SetOutput(stderr)
	cf := commonFlags(mfs)
	runMode := m.flags(mfs)
	if code, done := parse(mfs, fs.Args()[1:]); done {
		return code
	}

	sides := []struct {
		name, url string
		pid       int
	}{{*nameA, *urlA, *pidA}, {*nameB, *urlB, *pidB}}
	var reps [2]loadtest.Report
	for i, s := range sides {
		if i > 0 {
			// Let the first target's connections wind down.
			select {
			case <-time.After(*pause):
			case <-ctx.Done():
				return fail(stderr, "compare", ctx.Err())
			}
		}
		cm := cf.common(stderr)
		cm.URL, cm.ServerPID = s.url, s.pid
		if cm.Progress != nil {
			fmt.Fprintf(stderr, "channels-load compare: %s against %s (%s)\n", m.name, s.name, s.url)
		}
		rep, err := runMode(ctx, cm)
		if err != nil {
			return fail(stderr, "compare "+s.name, err)
		}
		reps[i] = rep
	}
	c := loadtest.Compare(m.name, loadtest.Side{Name: *nameA, Report: reps[0]}, loadtest.Side{Name: *nameB, Report: reps[1]})
	return finish(ctx, stdout, stderr, "compare", c, *cf.json)
}

// runReference serves the reference implementation until ctx is done.
func runReference(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("channels-load reference", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9000", "listen address")
	queue := fs.Int("queue", loadtest.DefaultQueueSize, "broadcast frames buffered per connection")
	slow := fs.Duration("slow", loadtest.DefaultSlowTimeout, "how long one write to a client may block before the client is closed as too slow")
	direct := fs.Bool("direct", false, "broadcast by writing to each member directly instead of through its queue and writer goroutine")
	if code, done := parse(fs, args); done {
		return code
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	ref := &loadtest.Reference{QueueSize: *queue, SlowTimeout: *slow, DirectWrite: *direct, Logger: log}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(stderr, "channels-load reference: %v\n", err)
		return exitFailure
	}
	srv := &http.Server{Handler: ref, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	a := ln.Addr().String()
	fmt.Fprintf(stdout, "reference server pid %d listening on %s\n  http://%s/http/\n  ws://%s/echo/\n  ws://%s/fanout/<room>/\n", os.Getpid(), a, a, a, a)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		fmt.Fprintf(stderr, "channels-load reference: %v\n", err)
		return exitFailure
	case <-ctx.Done():
	}
	st := ref.Stats()
	log.Info("shutting down", "open_websockets", st.Conns, "evicted_slow_clients", st.Evicted)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = errors.Join(srv.Shutdown(sctx), ref.Shutdown(sctx))
	<-errc
	if err != nil {
		fmt.Fprintf(stderr, "channels-load reference: shutdown: %v\n", err)
		return exitFailure
	}
	fmt.Fprintln(stdout, "reference server stopped")
	return exitOK
}
