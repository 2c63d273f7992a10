package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/metrics"
)

// ErrNoBindings is returned by runbinding for an application that declares
// no bindings (App.Bindings is empty).
var ErrNoBindings = errors.New("the application declares no bindings (App.Bindings is empty)")

// runbinding runs the data-binding relay alone: it reads the changes the
// bound tables' triggers record in the outbox, in commit order, and sends
// them to the groups that can see them, over a cross-process layer.
func (a *App) runbinding(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet(a.name()+" runbinding", flag.ContinueOnError)
	fs.SetOutput(a.stderr())
	layerURL := fs.String("layer", os.Getenv(LayerEnv), "channel layer URL (redis://...; default $"+LayerEnv+")")
	dbURL := fs.String("database", "", "database of the bound tables: sqlite file path or sqlite:///path, or postgres://... (default the application's own, else $DATABASE_URL)")
	prefix := fs.String("table-prefix", "", "prefix of the outbox and bookkeeping tables, when --database opens the database (default "+binding.DefaultTablePrefix+")")
	verbosity := fs.Int("v", 1, "verbosity: 0 warnings, 1 info, 2 debug")
	var poll, retention time.Duration
	fs.Var(newSecondsFlag(&poll, 0), "sleep", "seconds between safety polls of the outbox (the relay is woken by NOTIFY on PostgreSQL; default 1 for PostgreSQL, 0.25 for SQLite)")
	fs.Var(newSecondsFlag(&retention, 0), "retention", "seconds a change may wait in the outbox before it is dropped unsent, logged and counted (default 86400)")
	obs := addObserveFlags(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if len(a.Bindings) == 0 {
		return fmt.Errorf("runbinding: %w", ErrNoBindings)
	}
	log, err := obs.logger(a.stderr(), *verbosity)
	if err != nil {
		return err
	}
	defer obs.tuneGC(log)()
	layer, err := openLayer(ctx, *layerURL, log)
	if err != nil {
		return err
	}
	defer closeLayer(layer)
	if IsInMemory(layer) {
		return fmt.Errorf("runbinding: %w", ErrInMemoryLayer)
	}
	db := a.Database
	if *dbURL != "" || db == nil {
		url := *dbURL
		if url == "" {
			url = os.Getenv("DATABASE_URL")
		}
		if url == "" {
			return usageError("runbinding: no database: give --database, set App.Database or $DATABASE_URL")
		}
		db, err = binding.OpenConfig(ctx, binding.Config{URL: url, TablePrefix: *prefix, Logger: log})
		if err != nil {
			return fmt.Errorf("runbinding: %w", err)
		}
		defer db.Close()
	}
	relay, err := a.newRelay(layer, db, log)
	if err != nil {
		return fmt.Errorf("runbinding: %w", err)
	}
	relay.PollInterval = poll
	relay.Retention = retention
	reg := metrics.NewRegistry()
	reg.MustRegister(metrics.Binding(relay), metrics.Layer(layer))
	stopMetrics, err := serveMetrics(obs.metricsAddr, log, reg, metrics.LayerReady(layer), metrics.BindingDatabaseReady(db))
	if err != nil {
		return err
	}
	defer stopMetrics()
	log.Info(fmt.Sprintf("Running binding relay for %d binding(s) on %s against channel layer %s", len(a.Bindings), db, layer))
	if err := relay.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("runbinding: %w", err)
	}
	return nil
}

// newRelay returns the relay of the application's bindings over layer and
// db.
func (a *App) newRelay(layer channels.Layer, db *binding.DB, log *slog.Logger) (*binding.Relay, error) {
	gl, ok := layer.(channels.GroupLayer)
	if !ok {
		return nil, fmt.Errorf("binding relay: %w (%s)", channels.ErrGroupsUnsupported, layer)
	}
	return &binding.Relay{DB: db, Layer: gl, Bindings: a.Bindings, Logger: log}, nil
}

// startRelay is runserver's part: with bindings declared it returns the
// relay to run over layer on App.Database, or an error when there is no
// database; without bindings, or with --nobinding, it returns nil.
func (a *App) startRelay(layer channels.Layer, off bool, log *slog.Logger, out io.Writer) (*binding.Relay, error) {
	if len(a.Bindings) == 0 || off {
		return nil, nil
	}
	if a.Database == nil {
		return nil, errors.New("runserver: App.Bindings needs App.Database, the database of the bound tables")
	}
	relay, err := a.newRelay(layer, a.Database, log)
	if err != nil {
		return nil, fmt.Errorf("runserver: %w", err)
	}
	fmt.Fprintf(out, "Binding relay: %d binding(s) on %s\n", len(a.Bindings), a.Database)
	return relay, nil
}
