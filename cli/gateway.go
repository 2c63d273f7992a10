package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/js"
	"github.com/gochannels/channels/metrics"
)

// RunGateway runs the standalone interface server (cmd/channels-gateway) with
// daphne-like flags until ctx is done. Its positional argument, if any, is
// the channel layer URL.
func RunGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runGateway(ctx, "channels-gateway", args, stdout, stderr, true, nil)
}

// runGateway runs the gateway command. router is the application's when
// the workers run it (an App's gateway subcommand); nil for the standalone
// gateway, whose workers it does not know (they get http.disconnect after
// every request).
func runGateway(ctx context.Context, name string, args []string, stdout, stderr io.Writer, standalone bool, router *channels.Router) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		bind, unix, accessLog, rootPath, layerURL string
		port, fd, verbosity                       int
		endpoints, protocols, origins, proxies    stringsFlag
		proxyHeaders, allowMissingOrigin          bool
		httpTimeout, pingInterval, pingTimeout    time.Duration
		wsTimeout, connectTimeout                 time.Duration
	)
	fs.StringVar(&layerURL, "layer", os.Getenv(LayerEnv), "channel layer URL (redis://...; default $"+LayerEnv+")")
	for _, n := range []string{"b", "bind"} {
		fs.StringVar(&bind, n, "", "TCP bind address")
	}
	for _, n := range []string{"p", "port"} {
		fs.IntVar(&port, n, 0, "TCP port")
	}
	for _, n := range []string{"u", "unix-socket"} {
		fs.StringVar(&unix, n, "", "listen on this UNIX socket")
	}
	fs.IntVar(&fd, "fd", -1, "listen on this inherited file descriptor")
	for _, n := range []string{"e", "endpoint"} {
		fs.Var(&endpoints, n, "raw endpoint, e.g. tcp:port=8000:interface=0.0.0.0 or ssl:port=443:privateKey=key.pem:certKey=cert.pem (repeatable)")
	}
	for _, n := range []string{"v", "verbosity"} {
		fs.IntVar(&verbosity, n, 1, "0 warnings, 1 info, 2 debug")
	}
	ht := newSecondsFlag(&httpTimeout, 120*time.Second)
	for _, n := range []string{"t", "http-timeout"} {
		fs.Var(ht, n, "seconds to wait for a complete response before answering 503")
	}
	fs.StringVar(&accessLog, "access-log", "", "access log file (NCSA lines), or - for the log (default the log when verbosity ≥ 1)")
	fs.Var(newSecondsFlag(&pingInterval, 20*time.Second), "ping-interval", "seconds a WebSocket may be idle before a keepalive ping")
	fs.Var(newSecondsFlag(&pingTimeout, 30*time.Second), "ping-timeout", "seconds a ping may wait for its pong")
	fs.Var(newSecondsFlag(&wsTimeout, 0), "websocket-timeout", "longest a WebSocket may stay open (default the layer's group expiry)")
	fs.Var(newSecondsFlag(&connectTimeout, 30*time.Second), "websocket-connect-timeout", "seconds a handshake waits for the application's answer")
	fs.Var(&protocols, "ws-protocol", "WebSocket subprotocol the server accepts (repeatable)")
	fs.StringVar(&rootPath, "root-path", "", "root_path of every request, e.g. /forum")
	fs.BoolVar(&proxyHeaders, "proxy-headers", false, "believe X-Forwarded-For/-Port/-Proto from --trusted-proxies (default loopback)")
	fs.Var(&proxies, "trusted-proxies", "networks whose proxy headers are believed, e.g. 10.0.0.0/8 (repeatable)")
	fs.Var(&origins, "allowed-origins", "origins allowed to open WebSockets, e.g. *.example.com (default the request's own host)")
	fs.BoolVar(&allowMissingOrigin, "allow-missing-origin", false, "accept WebSocket handshakes without an Origin header (non-browser clients)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	obs := addObserveFlags(fs)
	positional, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if standalone && len(positional) == 1 {
		layerURL = positional[0]
	} else if len(positional) > 0 {
		return usageError("%s: unexpected arguments %q", name, positional)
	}
	log, err := obs.logger(stderr, verbosity)
	if err != nil {
		return err
	}
	defer obs.tuneGC(log)()
	stopProfile, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stopProfile()

	var trusted []netip.Prefix
	if proxyHeaders && len(proxies) == 0 {
		proxies = stringsFlag{"127.0.0.0/8", "::1/128"}
	}
	if len(proxies) > 0 && !proxyHeaders {
		proxyHeaders = true
	}
	for _, p := range proxies {
		pfx, err := netip.ParsePrefix(p)
		if err != nil {
			addr, aerr := netip.ParseAddr(p)
			if aerr != nil {
				return usageError("%s: --trusted-proxies %q: %v", name, p, err)
			}
			pfx = netip.PrefixFrom(addr, addr.BitLen())
		}
		trusted = append(trusted, pfx)
	}

	eps := BuildEndpoints(EndpointOptions{Bind: bind, Port: port, UnixSocket: unix, FD: fd, Endpoints: toEndpoints(endpoints)})
	if len(eps) == 0 {
		return ErrNoEndpoints
	}
	layer, err := openLayer(ctx, layerURL, log)
	if err != nil {
		return err
	}
	defer closeLayer(layer)
	if IsInMemory(layer) {
		return fmt.Errorf("%s: %w", name, ErrInMemoryLayer)
	}

	var access io.Writer
	switch {
	case accessLog == "-":
		access = logWriter{log.With("component", "access")}
	case accessLog != "":
		f, err := os.OpenFile(accessLog, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("%s: access log: %w", name, err)
		}
		defer f.Close()
		access = f
	case verbosity >= 1:
		access = logWriter{log.With("component", "access")}
	}
	gw := &gateway.Server{
		Layer:              layer,
		HTTPTimeout:        httpTimeout,
		ConnectTimeout:     connectTimeout,
		PingInterval:       pingInterval,
		PingTimeout:        pingTimeout,
		WebSocketTimeout:   wsTimeout,
		Subprotocols:       protocols,
		RootPath:           rootPath,
		AllowedOrigins:     origins,
		TrustedProxies:     trusted,
		AllowMissingOrigin: allowMissingOrigin,
		Logger:             log,
		AccessLog:          access,
		// An App's workers run its router: they consume http.disconnect
		// only where it routes it.
		WantsHTTPDisconnect: wantsHTTPDisconnect(router),
	}
	var listeners []net.Listener
	for _, e := range eps {
		l, err := e.Listen()
		if err != nil {
			for _, l := range listeners {
				l.Close()
			}
			return err
		}
		listeners = append(listeners, l)
	}
	names := make([]string, len(eps))
	for i, e := range eps {
		names[i] = string(e)
	}
	log.Info(fmt.Sprintf("Starting server at %s, channel layer %s.", strings.Join(names, ", "), layer))

	reg := metrics.NewRegistry()
	reg.MustRegister(metrics.Gateway(gw), metrics.Layer(layer))
	stopMetrics, err := serveMetrics(obs.metricsAddr, log, reg, metrics.LayerReady(layer))
	if err != nil {
		for _, l := range listeners {
			l.Close()
		}
		return err
	}
	defer stopMetrics()

	// The JavaScript client is served by the gateway itself (js.Prefix).
	srv := gateway.NewHTTPServer("", js.Wrap(gw))
	var wg sync.WaitGroup
	errs := make(chan error, len(listeners))
	for _, l := range listeners {
		wg.Go(func() {
			if err := srv.Serve(gateway.NewListener(l)); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errs <- err
			}
		})
	}
	runErr := serveUntilDone(ctx, log, errs, srv, gw)
	wg.Wait()
	return runErr
}

func toEndpoints(ss []string) []Endpoint {
	out := make([]Endpoint, len(ss))
	for i, s := range ss {
		out[i] = Endpoint(s)
	}
	return out
}
