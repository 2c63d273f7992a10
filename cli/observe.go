package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochannels/channels/internal/gctune"
	"github.com/gochannels/channels/metrics"
)

// observeFlags are the flags every role shares for logs and metrics, and
// for the garbage collector's heap floor.
type observeFlags struct {
	metricsAddr string
	logFormat   string
	logLevel    string
	gcFloorMiB  int
}

// defaultGCFloorMiB is --gc-floor's default: the heap, in MiB, a command
// lets grow before a garbage collection while its live heap is small.
const defaultGCFloorMiB = 32

func addObserveFlags(fs *flag.FlagSet) *observeFlags {
	o := &observeFlags{}
	fs.StringVar(&o.metricsAddr, "metrics", "", "serve /metrics (Prometheus), /healthz and /readyz on this address, e.g. 127.0.0.1:9100 (default off)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "", "log level: debug, info, warn or error (default from -v)")
	fs.IntVar(&o.gcFloorMiB, "gc-floor", defaultGCFloorMiB, "MiB the heap may grow to before a garbage collection while the live heap is small (returned to the system once the process is quiet); 0 keeps Go's default (GOGC in the environment wins)")
	return o
}

// tuneGC applies --gc-floor until the returned stop is called. Messages
// are short-lived garbage over a small live heap; Go's default collects
// every 4 MiB or so, dozens of times a second under load, and the floor
// makes that a few (see internal/gctune).
func (o *observeFlags) tuneGC(log *slog.Logger) (stop func()) {
	if o.gcFloorMiB < 0 {
		log.Warn("--gc-floor is negative; keeping Go's default", "gc_floor_mib", o.gcFloorMiB)
		return func() {}
	}
	stop, err := gctune.Start(uint64(o.gcFloorMiB) << 20)
	switch {
	case err != nil:
		log.Info("garbage collector left at the environment's setting", "reason", err)
	case o.gcFloorMiB > 0:
		log.Info("garbage collector: the heap may grow to the floor before a collection while the live heap is small", "gc_floor_mib", o.gcFloorMiB)
	}
	return stop
}

// logger returns the one logger of the process: the format and level the
// flags chose (the level from verbosity when --log-level is not given:
// 0 warnings, 1 info, 2 debug), panic stacks written as lines, and repeated
// identical warnings and errors rate-limited.
func (o *observeFlags) logger(w io.Writer, verbosity int) (*slog.Logger, error) {
	level := slog.LevelInfo
	switch {
	case verbosity <= 0:
		level = slog.LevelWarn
	case verbosity >= 2:
		level = slog.LevelDebug
	}
	if o.logLevel != "" {
		if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
			return nil, usageError("--log-level %q: want debug, info, warn or error", o.logLevel)
		}
	}
	return NewLogger(w, o.logFormat, level)
}

// NewLogger returns the logger the commands use: format is "text" or
// "json". A record's "stack" attribute (a panic's stack, as the worker logs
// it) is written as indented lines after a text record and as an array of
// lines in a JSON one. Warnings and errors with the same message, component
// and error repeated within RepeatInterval are logged once; the next one
// logged after the interval carries "repeated", the number left out. Records
// that differ in their "error", "channel", "consumer", "panic" or "path"
// attribute are not the same.
func NewLogger(w io.Writer, format string, level slog.Leveler) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	sw := &syncWriter{w: w}
	switch format {
	case "", "text":
		h = slog.NewTextHandler(sw, opts)
	case "json":
		h = slog.NewJSONHandler(sw, opts)
	default:
		return nil, usageError("--log-format %q: want text or json", format)
	}
	h = &stackHandler{next: h, w: sw, mu: &sync.Mutex{}, json: format == "json"}
	return slog.New(newRepeatHandler(h, RepeatInterval)), nil
}

// RepeatInterval is how long NewLogger's loggers leave out a warning or
// error identical to one just logged.
const RepeatInterval = 5 * time.Second

// syncWriter serialises the writes of one logger (a record and the stack
// lines after it stay together).
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// stackHandler takes a multi-line "stack" attribute out of a record and
// writes it as lines (text) or as an array of lines (JSON).
type stackHandler struct {
	next slog.Handler
	w    io.Writer
	mu   *sync.Mutex // holds a record and its stack lines together
	json bool
}

func (h *stackHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *stackHandler) Handle(ctx context.Context, r slog.Record) error {
	var stack string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "stack" && a.Value.Kind() == slog.KindString && strings.Contains(a.Value.String(), "\n") {
			stack = a.Value.String()
			return false
		}
		return true
	})
	if stack == "" {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.next.Handle(ctx, r)
	}
	lines := strings.Split(strings.TrimRight(stack, "\n"), "\n")
	nr := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		if a.Key != "stack" {
			nr.AddAttrs(a)
		}
		return true
	})
	if h.json {
		nr.AddAttrs(slog.Any("stack", lines))
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.next.Handle(ctx, nr)
	}
	var buf bytes.Buffer
	for _, l := range lines {
		buf.WriteString("\t")
		buf.WriteString(l)
		buf.WriteString("\n")
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.next.Handle(ctx, nr); err != nil {
		return err
	}
	_, err := h.w.Write(buf.Bytes())
	return err
}

func (h *stackHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &stackHandler{next: h.next.WithAttrs(as), w: h.w, mu: h.mu, json: h.json}
}

func (h *stackHandler) WithGroup(name string) slog.Handler {
	return &stackHandler{next: h.next.WithGroup(name), w: h.w, mu: h.mu, json: h.json}
}

// repeatHandler leaves out warnings and errors identical to one logged less
// than interval ago, and counts them.
type repeatHandler struct {
	next     slog.Handler
	interval time.Duration
	attrs    string // the component and other attributes from WithAttrs
	state    *repeatState
}

type repeatState struct {
	mu   sync.Mutex
	seen map[string]*repeated
}

type repeated struct {
	last    time.Time
	skipped int
}

// repeatKeys bounds the remembered messages; the memory is cleared when full.
const repeatKeys = 1024

func newRepeatHandler(next slog.Handler, interval time.Duration) *repeatHandler {
	return &repeatHandler{next: next, interval: interval, state: &repeatState{seen: map[string]*repeated{}}}
}

func (h *repeatHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, l)
}

func (h *repeatHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		return h.next.Handle(ctx, r)
	}
	var key strings.Builder
	key.WriteString(r.Level.String())
	key.WriteString("\x00")
	key.WriteString(h.attrs)
	key.WriteString("\x00")
	key.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "error", "component", "channel", "consumer", "panic", "path":
			key.WriteString("\x00")
			key.WriteString(a.Key)
			key.WriteString("=")
			key.WriteString(a.Value.String())
		}
		return true
	})
	k := key.String()
	s := h.state
	s.mu.Lock()
	e := s.seen[k]
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}
	if e != nil && now.Sub(e.last) < h.interval {
		e.skipped++
		s.mu.Unlock()
		return nil
	}
	skipped := 0
	if e == nil {
		if len(s.seen) >= repeatKeys {
			clear(s.seen)
		}
		e = &repeated{}
		s.seen[k] = e
	} else {
		skipped = e.skipped
	}
	e.last, e.skipped = now, 0
	s.mu.Unlock()
	if skipped > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("repeated", skipped))
	}
	return h.next.Handle(ctx, r)
}

func (h *repeatHandler) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range as {
		b.WriteString(a.String())
		b.WriteString(" ")
	}
	return &repeatHandler{next: h.next.WithAttrs(as), interval: h.interval, attrs: b.String(), state: h.state}
}

func (h *repeatHandler) WithGroup(name string) slog.Handler {
	return &repeatHandler{next: h.next.WithGroup(name), interval: h.interval, attrs: h.attrs + name + ".", state: h.state}
}

// logWriter is an io.Writer that logs each line written to it at Info, for
// the gateway's access log.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.log.Info(line)
	}
	return len(p), nil
}

// serveMetrics serves reg's metrics and checks on addr (nothing when addr
// is empty) until the returned stop is called.
func serveMetrics(addr string, log *slog.Logger, reg *prometheus.Registry, checks ...metrics.Check) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	srv := &http.Server{
		Handler:           metrics.Handler(reg, checks...),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err)
		}
	}()
	log.Info("serving /metrics, /healthz and /readyz", "addr", "http://"+ln.Addr().String())
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
