package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/httpconsumer"
	"github.com/gochannels/channels/js"
	"github.com/gochannels/channels/metrics"
	"github.com/gochannels/channels/worker"
)

// DefaultDelayDatabase is the SQLite file runserver's delay server uses when
// neither --delay-database nor DATABASE_URL says otherwise.
const DefaultDelayDatabase = "channels-delay.db"

func (a *App) runserver(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet(a.name()+" runserver", flag.ContinueOnError)
	fs.SetOutput(a.stderr())
	var (
		layerURL    = fs.String("layer", os.Getenv(LayerEnv), "channel layer URL (memory:// or redis://...; default $"+LayerEnv+", else in-memory)")
		workers     = fs.Int("workers", 4, "consumers run at once by the in-process worker")
		nothreading = fs.Bool("nothreading", false, "run one consumer at a time (--workers 1)")
		noworker    = fs.Bool("noworker", false, "start no in-process worker (run 'runworker' separately; needs a cross-process layer)")
		rootPath    = fs.String("root-path", os.Getenv("FORCE_SCRIPT_NAME"), "root_path of every request (default $FORCE_SCRIPT_NAME)")
		staticDir   = fs.String("static", "", "serve the files of this directory under --static-url")
		staticURL   = fs.String("static-url", "/static/", "URL prefix of the static files")
		nodelay     = fs.Bool("nodelay", false, "run no delay server in this process")
		nobinding   = fs.Bool("nobinding", false, "run no binding relay in this process (run 'runbinding' separately)")
		delayDB     = fs.String("delay-database", "", "delay server database URL (default $DATABASE_URL, else sqlite file "+DefaultDelayDatabase+")")
		ipv6        = fs.Bool("ipv6", false, "default to ::1 instead of 127.0.0.1")
		origins     stringsFlag
		verbosity   = fs.Int("v", 1, "verbosity: 0 warnings, 1 info, 2 debug")
		cpuprofile  = fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
		httpTimeout time.Duration
	)
	fs.BoolVar(ipv6, "6", false, "same as --ipv6")
	fs.Var(&origins, "allowed-origins", "origins allowed to open WebSockets (patterns like *.example.com; default the request's own host)")
	allowMissingOrigin := fs.Bool("allow-missing-origin", false, "accept WebSocket handshakes without an Origin header (non-browser clients)")
	timeout := newSecondsFlag(&httpTimeout, 60*time.Second)
	fs.Var(timeout, "http-timeout", "seconds to wait for a worker's response before answering 503")
	fs.Var(timeout, "http_timeout", "same as --http-timeout (the Channels 1.0 spelling)")
	obs := addObserveFlags(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(positional) > 1 {
		return usageError("runserver takes one optional addr:port, got %q", positional)
	}
	host, port := "127.0.0.1", "8000"
	if *ipv6 {
		host = "::1"
	}
	if len(positional) == 1 {
		host, port, err = splitAddrPort(positional[0], host)
		if err != nil {
			return usageError("runserver: %v", err)
		}
	}
	if *nothreading {
		*workers = 1
	}
	if *workers < 1 {
		return usageError("runserver: --workers must be at least 1")
	}
	log, err := obs.logger(a.stderr(), *verbosity)
	if err != nil {
		return err
	}
	defer obs.tuneGC(log)()
	stopProfile, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()

	layer, err := openLayer(ctx, *layerURL, log)
	if err != nil {
		return err
	}
	defer closeLayer(layer)
	if *noworker && IsInMemory(layer) {
		log.Warn("--noworker with the in-memory layer: no other process can run the workers, so nothing will answer")
	}

	var handler http.Handler = a.HTTP
	if *staticDir != "" {
		mux := http.NewServeMux()
		prefix := "/" + strings.Trim(*staticURL, "/") + "/"
		mux.Handle(prefix, http.StripPrefix(prefix, http.FileServer(http.Dir(*staticDir))))
		if a.HTTP != nil {
			mux.Handle("/", a.HTTP)
		}
		handler = mux
	}
	var httpDefault channels.Consumer
	if handler != nil {
		httpDefault = &httpconsumer.Consumer{Handler: handler, Logger: log}
	}
	router := channels.WithDefaults(a.Router, httpDefault)

	gw := &gateway.Server{
		Layer:              layer,
		HTTPTimeout:        httpTimeout,
		RootPath:           *rootPath,
		AllowedOrigins:     origins,
		AllowMissingOrigin: *allowMissingOrigin,
		Subprotocols:       splitList(os.Getenv("CHANNELS_WS_PROTOCOLS")),
		Logger:             log,
		OnAction:           runserverActions(log),
		// The workers run a.Router: they consume http.disconnect only
		// where it routes it.
		WantsHTTPDisconnect: wantsHTTPDisconnect(a.Router),
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return fmt.Errorf("runserver: %w", err)
	}
	// The JavaScript client is served by the gateway itself (js.Prefix).
	srv := gateway.NewHTTPServer(ln.Addr().String(), js.Wrap(gw))

	out := a.stdout()
	fmt.Fprintf(out, "%s\n", time.Now().Format("January 02, 2006 - 15:04:05"))
	fmt.Fprintf(out, "Starting Channels development server at http://%s/\n", ln.Addr())
	fmt.Fprintf(out, "Channel layer %s\n", layer)
	if *noworker {
		fmt.Fprintln(out, "Worker thread disabled (--noworker).")
	} else {
		fmt.Fprintf(out, "Worker: %d consumer(s) at once on %s\n", *workers, strings.Join(router.Channels(), ", "))
	}
	fmt.Fprintln(out, "Quit the server with CONTROL-C.")

	relay, err := a.startRelay(layer, *nobinding, log, out)
	if err != nil {
		ln.Close()
		return err
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(metrics.Gateway(gw), metrics.Layer(layer))
	reg.MustRegister(a.Metrics...)
	checks := []metrics.Check{metrics.LayerReady(layer)}
	var wg sync.WaitGroup
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	errs := make(chan error, 4)
	if !*noworker {
		consumer := metrics.NewConsumer(router)
		w := &worker.Worker{Layer: layer, Consumer: consumer, Concurrency: *workers, Logger: log}
		reg.MustRegister(consumer, metrics.Worker(w))
		wg.Go(func() {
			if err := w.Run(bg); err != nil {
				errs <- fmt.Errorf("worker: %w", err)
			}
		})
	}
	if !*nodelay {
		ds, err := openDelayServer(ctx, layer, *delayDB, log)
		if err != nil {
			ln.Close()
			return err
		}
		defer ds.Store.Close()
		reg.MustRegister(metrics.Delay(ds))
		checks = append(checks, metrics.DatabaseReady(ds.Store))
		wg.Go(func() {
			if err := ds.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("delay server: %w", err)
			}
		})
	}
	if relay != nil {
		reg.MustRegister(metrics.Binding(relay))
		checks = append(checks, metrics.BindingDatabaseReady(a.Database))
		wg.Go(func() {
			if err := relay.Run(bg); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("binding relay: %w", err)
			}
		})
	}
	stopMetrics, err := serveMetrics(obs.metricsAddr, log, reg, checks...)
	if err != nil {
		ln.Close()
		stopBackground()
		wg.Wait()
		return err
	}
	defer stopMetrics()
	wg.Go(func() {
		if err := srv.Serve(gateway.NewListener(ln)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs <- fmt.Errorf("runserver: %w", err)
		}
	})

	runErr := serveUntilDone(ctx, log, errs, srv, gw)
	stopBackground()
	wg.Wait()
	return runErr
}

// serveUntilDone waits until ctx is done or an error arrives on errs, then
// shuts the HTTP server and the gateway down, giving them 10 s to finish
// (the gateway is closed after that), and returns the error, if any.
func serveUntilDone(ctx context.Context, log *slog.Logger, errs <-chan error, srv *http.Server, gw *gateway.Server) error {
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := gw.Shutdown(sctx); err != nil {
		gw.Close()
	}
	return runErr
}

// startCPUProfile profiles the process into path until the returned stop
// is called; with no path it does nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func openDelayServer(ctx context.Context, layer channels.Layer, dbURL string, log *slog.Logger) (*delay.Server, error) {
	if dbURL == "" {
		dbURL = os.Getenv("DATABASE_URL")
	}
	if dbURL == "" {
		dbURL = DefaultDelayDatabase
	}
	store, err := delay.OpenStore(ctx, delay.StoreConfig{URL: dbURL, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("delay server: %w", err)
	}
	log.Info("delay server storing scheduled messages", "database", redactURL(dbURL))
	return &delay.Server{Layer: layer, Store: store, Logger: log}, nil
}

// splitAddrPort parses runserver's positional "port", "addr:port" or
// "[v6]:port".
func splitAddrPort(s, defHost string) (string, string, error) {
	if !strings.Contains(s, ":") {
		return defHost, s, checkPort(s)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", "", fmt.Errorf("%q is not addr:port: %w", s, err)
	}
	if host == "" {
		host = defHost
	}
	return host, port, checkPort(port)
}

func checkPort(p string) error {
	var n int
	if _, err := fmt.Sscanf(p, "%d", &n); err != nil || n < 0 || n > 65535 || fmt.Sprint(n) != p {
		return fmt.Errorf("%q is not a port number", p)
	}
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }) {
		out = append(out, p)
	}
	return out
}

func redactURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "…@" + u[i+1:]
		}
	}
	return u
}

// runserverActions logs runserver's access lines through log, at Info
// with component=access, the message as Django's runserver words it:
//
//	HTTP GET /chat/ 200 [0.01, 127.0.0.1:53012]
//	WebSocket CONNECT /chat/lobby/ [127.0.0.1:53014]
func runserverActions(log *slog.Logger) func(string, string, gateway.ActionDetails) {
	log = log.With("component", "access")
	return func(protocol, action string, d gateway.ActionDetails) {
		if !log.Enabled(context.Background(), slog.LevelInfo) {
			return // -v 0: nothing to format
		}
		client := d.Client
		if client == "" {
			client = "None"
		}
		switch {
		case protocol == "http" && action == "complete":
			log.Info(fmt.Sprintf("HTTP %s %s %d [%.2f, %s]", d.Method, d.Path, d.Status, d.TimeTaken.Seconds(), client))
		case protocol == "websocket":
			word := map[string]string{"connecting": "HANDSHAKING", "connected": "CONNECT", "rejected": "REJECT", "disconnected": "DISCONNECT"}[action]
			if word != "" {
				log.Info(fmt.Sprintf("WebSocket %s %s [%s]", word, d.Path, client))
			}
		}
	}
}
