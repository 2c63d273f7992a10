// Package cli turns an application's router into a command with the
// subcommands a Channels deployment needs — the manage.py role:
//
//	runserver [addr:port]  gateway, workers and a delay server in one process,
//	                       on the in-memory layer by default (development)
//	runworker              workers only, on a cross-process layer (Redis)
//	gateway                the interface server only (Daphne's role)
//	rundelay               the delay server only
//	runbinding             the data-binding relay only
//
// A program is one line:
//
//	func main() { cli.Main(router) }
//
// With no subcommand it runs runserver. The layer comes from --layer or the
// CHANNELS_LAYER environment variable (a URL: memory:// or redis://...;
// in-memory when unset).
//
// Every command takes --metrics ADDR, which serves the role's Prometheus
// metrics on /metrics with /healthz and /readyz (package metrics lists
// them), and --log-format text|json with --log-level: all the roles of one
// process log through one logger (NewLogger). The exit status is 0 after a
// clean stop, 2 for a usage error and 1 for any other error (ExitCode).
//
// An application with data bindings (package binding) lists them in
// App.Bindings with the database of their tables in App.Database. runserver
// then runs their relay in the same process (--nobinding turns it off), and
// runbinding runs it alone, against a Redis layer, as rundelay runs the
// delay server:
//
//	myapp runbinding --layer redis://127.0.0.1:6379/0 --database postgres://…/app
//
// The relay installs the bound tables' triggers and the outbox at start
// (binding.Install). Changes committed while no relay runs wait in the
// outbox, up to --retention (a day by default), and are sent in commit
// order when one starts; several runbinding processes on one PostgreSQL
// database share the work.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
)

// App is an application's command line. Router is required; the other
// fields have working defaults.
type App struct {
	// Router routes the application's messages. Workers add the default
	// routes after it (see channels.WithDefaults).
	Router *channels.Router
	// HTTP serves plain HTTP requests (the views). Workers run it for
	// http.request messages; nil means 404 for every request.
	HTTP http.Handler
	// Name is the program name in usage messages. Empty means os.Args[0].
	Name string
	// Stdout and Stderr default to os.Stdout and os.Stderr.
	Stdout, Stderr io.Writer
	// Metrics are the application's own Prometheus collectors (for
	// example metrics.Demultiplexer of each demultiplexer), registered
	// beside the role's on --metrics by runserver and runworker.
	Metrics []prometheus.Collector

	// Bindings are the application's data bindings. When there are any,
	// runserver runs their relay in the process and runbinding runs it
	// alone; both send each committed change of a bound table to the
	// groups that can see it.
	Bindings []binding.Registration
	// Database is the database of the bound tables, the one the bindings'
	// inbound consumers write through. runserver's relay uses it, and so
	// does runbinding unless --database names another. Required with
	// Bindings in runserver.
	Database *binding.DB
}

// Main runs the command line of an application made of router and exits.
func Main(router *channels.Router) {
	(&App{Router: router}).Main()
}

// Main runs the command line from os.Args and exits with its status: 0 after
// a clean stop (SIGINT or SIGTERM), 2 for usage errors, 1 for other errors.
func (a *App) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := a.Run(ctx, os.Args[1:])
	stop()
	os.Exit(exitCode(a.stderr(), err))
}

func exitCode(stderr io.Writer, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsagePrinted):
		return 2
	case errors.Is(err, errUsage):
		fmt.Fprintln(stderr, err)
		return 2
	default:
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
}

var errUsage = errors.New("usage")

func usageError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, args...))
}

func (a *App) stdout() io.Writer {
	if a.Stdout != nil {
		return a.Stdout
	}
	return os.Stdout
}

func (a *App) stderr() io.Writer {
	if a.Stderr != nil {
		return a.Stderr
	}
	return os.Stderr
}

func (a *App) name() string {
	if a.Name != "" {
		return a.Name
	}
	return os.Args[0]
}

// Run runs one subcommand (runserver when args has none) until ctx is done or
// the command fails. It returns nil after a clean stop.
func (a *App) Run(ctx context.Context, args []string) error {
	if a.Router == nil {
		return errors.New("cli: App.Router is required")
	}
	cmd := "runserver"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") && !looksLikeAddr(args[0]) {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "runserver":
		return a.runserver(ctx, args)
	case "runworker":
		return a.runworker(ctx, args)
	case "gateway":
		return runGateway(ctx, a.name()+" gateway", args, a.stdout(), a.stderr(), false, a.Router)
	case "rundelay":
		return runDelay(ctx, a.name()+" rundelay", args, a.stderr())
	case "runbinding":
		return a.runbinding(ctx, args)
	case "help", "-h", "--help":
		a.usage()
		return nil
	}
	a.usage()
	return usageError("unknown command %q", cmd)
}

func (a *App) usage() {
	fmt.Fprintf(a.stderr(), `Usage: %[1]s [command] [flags]

Commands:
  runserver [addr:port]  gateway, workers and a delay server in one process (default)
  runworker              run workers against a cross-process layer
  gateway                run the interface server only
  rundelay               run the delay server only
  runbinding             run the data-binding relay only (App.Bindings)

Run '%[1]s <command> -h' for a command's flags. The channel layer is chosen
with --layer or $%[2]s (memory:// or redis://host:port/db; in-memory when unset).
Every command takes --metrics ADDR (Prometheus /metrics, /healthz, /readyz),
--log-format text|json and --log-level debug|info|warn|error.
`, a.name(), LayerEnv)
}

// looksLikeAddr reports whether s is runserver's positional addr:port.
func looksLikeAddr(s string) bool {
	if s == "" {
		return false
	}
	if s[0] >= '0' && s[0] <= '9' || s[0] == '[' || s[0] == ':' {
		return true
	}
	return strings.Contains(s, ":") && !strings.Contains(s, "/")
}

// parseInterspersed parses flags that may come before or after positional
// arguments, and returns the positional ones.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, flagError(err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if rest[0] == "--" {
			return append(positional, rest[1:]...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// newLogger returns the text logger (see NewLogger) for a verbosity:
// 0 warnings, 1 info, 2 debug.
func newLogger(w io.Writer, verbosity int) *slog.Logger {
	level := slog.LevelInfo
	switch {
	case verbosity <= 0:
		level = slog.LevelWarn
	case verbosity >= 2:
		level = slog.LevelDebug
	}
	log, _ := NewLogger(w, "text", level) // "text" is always a valid format
	return log
}

// stringsFlag is a repeatable flag whose values may also be comma-separated.
type stringsFlag []string

func (s *stringsFlag) String() string { return strings.Join(*s, ",") }

func (s *stringsFlag) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s = append(*s, part)
		}
	}
	return nil
}
