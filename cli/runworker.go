package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/httpconsumer"
	"github.com/gochannels/channels/metrics"
	"github.com/gochannels/channels/worker"
)

// ErrInMemoryLayer is returned by the commands that run one role of a
// multi-process deployment (runworker, rundelay, gateway) when the layer is
// the in-memory one, which no other process can reach.
var ErrInMemoryLayer = errors.New("cannot span multiple processes with the in-memory layer; set --layer or $" + LayerEnv + " to a Redis URL")

func (a *App) runworker(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet(a.name()+" runworker", flag.ContinueOnError)
	fs.SetOutput(a.stderr())
	var only, exclude stringsFlag
	layerURL := fs.String("layer", os.Getenv(LayerEnv), "channel layer URL (redis://...; default $"+LayerEnv+")")
	threads := fs.Int("threads", 1, "consumers run at once")
	verbosity := fs.Int("v", 1, "verbosity: 0 warnings, 1 info, 2 debug (logs every consumed channel)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file (go tool pprof)")
	fs.Var(&only, "only-channels", "listen only on channels matching this glob (repeatable)")
	fs.Var(&exclude, "exclude-channels", "do not listen on channels matching this glob (repeatable)")
	obs := addObserveFlags(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	if *threads < 1 {
		return usageError("runworker: --threads must be at least 1")
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
	if IsInMemory(layer) {
		return fmt.Errorf("runworker: %w", ErrInMemoryLayer)
	}
	var httpDefault channels.Consumer
	if a.HTTP != nil {
		httpDefault = &httpconsumer.Consumer{Handler: a.HTTP, Logger: log}
	}
	if *threads == 1 {
		log.Info("Using single-threaded worker.")
	} else {
		log.Info(fmt.Sprintf("Using multi-threaded worker, %d thread(s).", *threads))
	}
	log.Info(fmt.Sprintf("Running worker against channel layer %s", layer))
	consumer := metrics.NewConsumer(channels.WithDefaults(a.Router, httpDefault))
	w := &worker.Worker{
		Layer:       layer,
		Consumer:    consumer,
		Only:        only,
		Exclude:     exclude,
		Concurrency: *threads,
		Logger:      log,
	}
	reg := metrics.NewRegistry()
	reg.MustRegister(consumer, metrics.Worker(w), metrics.Layer(layer))
	reg.MustRegister(a.Metrics...)
	stopMetrics, err := serveMetrics(obs.metricsAddr, log, reg, metrics.LayerReady(layer))
	if err != nil {
		return err
	}
	defer stopMetrics()
	return w.Run(ctx)
}

func runDelay(ctx context.Context, name string, args []string, stderr interface {
	Write([]byte) (int, error)
}) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	layerURL := fs.String("layer", os.Getenv(LayerEnv), "channel layer URL (redis://...; default $"+LayerEnv+")")
	dbURL := fs.String("database", "", "database URL: sqlite file path or sqlite:///path, or postgres://... (default $DATABASE_URL, else "+DefaultDelayDatabase+")")
	verbosity := fs.Int("v", 1, "verbosity: 0 warnings, 1 info, 2 debug")
	var poll time.Duration
	fs.Var(newSecondsFlag(&poll, 0), "sleep", "seconds between safety polls of the database (delivery itself is driven by a timer on the next due message; default 5)")
	obs := addObserveFlags(fs)
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	log, err := obs.logger(stderr, *verbosity)
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
		return fmt.Errorf("rundelay: %w", ErrInMemoryLayer)
	}
	ds, err := openDelayServer(ctx, layer, *dbURL, log)
	if err != nil {
		return err
	}
	defer ds.Store.Close()
	ds.Logger = log
	ds.PollInterval = poll
	reg := metrics.NewRegistry()
	reg.MustRegister(metrics.Delay(ds), metrics.Layer(layer))
	stopMetrics, err := serveMetrics(obs.metricsAddr, log, reg, metrics.LayerReady(layer), metrics.DatabaseReady(ds.Store))
	if err != nil {
		return err
	}
	defer stopMetrics()
	log.Info(fmt.Sprintf("Running delay server against channel layer %s", layer))
	if err := ds.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("rundelay: %w", err)
	}
	return nil
}

// RunDelay runs the delay server command (the standalone
// cmd/channels-delay) with args until ctx is done.
func RunDelay(ctx context.Context, args []string) error {
	return runDelay(ctx, "channels-delay", args, os.Stderr)
}
