// Package metrics exposes the figures of every Channels role as Prometheus
// metrics, and serves them with health and readiness checks.
//
// Each role already counts what it does in a Stats method (gateway.Server,
// worker.Worker, the layers' channels.StatsReporter, delay.Server); the
// collectors here read those figures at scrape time, so a role pays nothing
// for metrics until something scrapes them. Nothing is registered anywhere by
// default: a program that embeds the roles as a library registers the
// collectors it wants on a registry of its own and serves it where it likes,
// with Handler or with promhttp. The command line (package cli) does it for
// each role when given --metrics ADDR.
//
//	reg := metrics.NewRegistry()
//	reg.MustRegister(metrics.Gateway(gw), metrics.Layer(layer))
//	http.Handle("/", metrics.Handler(reg, metrics.LayerReady(layer)))
//
// Every metric, with its labels, is listed in docs/metrics.md.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/inmemory"
)

// Namespace prefixes every metric name of this package.
const Namespace = "channels"

// NewRegistry returns a registry holding the Go runtime and process
// collectors, and channels_build_info with channels.Version.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace:   Namespace,
			Name:        "build_info",
			Help:        "Always 1; the version label is channels.Version.",
			ConstLabels: prometheus.Labels{"version": channels.Version},
		}, func() float64 { return 1 }),
	)
	return reg
}

// A Check reports whether something a role depends on is usable; it returns
// nil when it is. Checks are run by the /readyz endpoint of Handler, each
// with a context that ends after CheckTimeout.
type Check struct {
	// Name names the dependency in /readyz's answer ("layer", "database").
	Name string
	// Func checks it.
	Func func(ctx context.Context) error
}

// CheckTimeout bounds each Check run by /readyz.
const CheckTimeout = 2 * time.Second

// readyChannel is the channel whose statistics LayerReady asks for: asking
// is a round trip to the layer's server that changes nothing.
const readyChannel = "channels.readyz"

// LayerReady returns a Check named "layer" that asks layer for the figures
// of one channel, a round trip to its server (Redis) that changes nothing.
// A layer that reports no statistics, like the in-memory layer (whose
// figures need no server), is always ready.
func LayerReady(layer channels.Layer) Check {
	return Check{Name: "layer", Func: func(ctx context.Context) error {
		sr, ok := layer.(channels.StatsReporter)
		if !ok || isInMemory(layer) {
			return nil
		}
		_, err := sr.ChannelStats(ctx, readyChannel)
		return err
	}}
}

// isInMemory reports whether layer is the in-memory one, which has no
// server to reach.
func isInMemory(layer channels.Layer) bool {
	_, ok := layer.(*inmemory.Layer)
	return ok
}

// DatabaseReady returns a Check named "database" that reads the schema
// version of a delay store, a round trip to its database.
func DatabaseReady(store *delay.Store) Check {
	return Check{Name: "database", Func: func(ctx context.Context) error {
		_, err := store.Version(ctx)
		return err
	}}
}

// Handler serves the metrics of reg and the health endpoints:
//
//	GET /metrics  the Prometheus text (or protobuf) exposition of reg
//	GET /healthz  200 "ok" while the process can answer
//	GET /readyz   200 "ready" when every check passes, else 503 with one
//	              line per failing check ("layer: redislayer: Redis unavailable: ...")
//
// Any other path is 404.
func Handler(reg *prometheus.Registry, checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		var failed []string
		for _, c := range checks {
			ctx, cancel := context.WithTimeout(r.Context(), CheckTimeout)
			err := c.Func(ctx)
			cancel()
			if err != nil {
				failed = append(failed, c.Name+": "+strings.ReplaceAll(err.Error(), "\n", " "))
			}
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, strings.Join(failed, "\n"))
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Ready runs checks as /readyz does and joins their errors.
func Ready(ctx context.Context, checks ...Check) error {
	var errs []error
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
		if err := c.Func(cctx); err != nil {
			errs = append(errs, fmt.Errorf("metrics: %s: %w", c.Name, err))
		}
		cancel()
	}
	return errors.Join(errs...)
}

// statsTimeout bounds the layer and store calls a scrape makes.
const statsTimeout = 2 * time.Second

// desc makes a metric description under Namespace.
func desc(subsystem, name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(Namespace, subsystem, name), help, labels, nil)
}

// counter and gauge make const metrics; they panic only on a mismatch of
// labels, which is a bug here.
func counter(d *prometheus.Desc, v uint64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}
