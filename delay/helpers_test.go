package delay_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/jackc/pgx/v5"
)

// backend opens stores of one kind for a test.
type backend struct {
	name string
	// open returns a new store config on a fresh table (prefix) that is
	// removed when the test ends.
	config func(t *testing.T) delay.StoreConfig
}

var backends = []backend{
	{"SQLite", sqliteConfig},
	{"PostgreSQL", pgConfig},
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, cfg func(t *testing.T) delay.StoreConfig)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.config) })
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func sqliteConfig(t *testing.T) delay.StoreConfig {
	return delay.StoreConfig{
		URL:    "sqlite://" + filepath.Join(t.TempDir(), "delay.db"),
		Logger: testLogger(t),
	}
}

// tablePrefix returns a random table prefix like "dt_3f9a1c2e_".
func tablePrefix() string {
	p := testenv.Prefix("dt")
	return strings.ReplaceAll(strings.TrimSuffix(p, ":"), "-", "_") + "_"
}

func pgConfig(t *testing.T) delay.StoreConfig {
	url := testenv.DatabaseURL(t)
	prefix := tablePrefix()
	t.Cleanup(func() { dropPGTables(t, url, prefix) })
	return delay.StoreConfig{URL: url, TablePrefix: prefix, Logger: testLogger(t)}
}

func dropPGTables(t testing.TB, url, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Errorf("drop tables %s*: %v", prefix, err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP TABLE IF EXISTS "+prefix+"delay, "+prefix+"delay_schema"); err != nil {
		t.Errorf("drop tables %s*: %v", prefix, err)
	}
}

func openStore(t *testing.T, cfg delay.StoreConfig) *delay.Store {
	t.Helper()
	s, err := delay.OpenStore(t.Context(), cfg)
	if err != nil {
		t.Fatalf("OpenStore(%s): %v", cfg.URL, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func newLayer(t testing.TB, cfg inmemory.Config) *inmemory.Layer {
	l := inmemory.MustNew(cfg)
	t.Cleanup(func() { l.Close() })
	return l
}

// running is a Server started by startServer.
type running struct {
	*delay.Server
	stop func() error // cancels Run and returns its error
}

// startServer runs srv until the test ends (or stop is called).
func startServer(t *testing.T, srv *delay.Server) *running {
	t.Helper()
	if srv.Logger == nil {
		srv.Logger = testLogger(t)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(20 * time.Second):
				err = errors.New("Run did not return within 20 s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &running{Server: srv, stop: stop}
}

// receive waits up to timeout for a message on channel.
func receive(t testing.TB, l channels.Layer, channel string, timeout time.Duration) channels.Content {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_, c, err := l.Receive(ctx, channel)
	if err != nil {
		t.Fatalf("nothing arrived on %s within %s: %v", channel, timeout, err)
	}
	return c
}

// nothingOn checks that no message is waiting on channel.
func nothingOn(t testing.TB, l channels.Layer, channel string) {
	t.Helper()
	_, c, err := channels.Poll(context.Background(), l, channel)
	if err != nil {
		t.Fatalf("poll %s: %v", channel, err)
	}
	if c != nil {
		t.Fatalf("unexpected message on %s: %v", channel, c)
	}
}

// eventually waits up to 10 s for cond.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func pending(t testing.TB, s *delay.Store) int {
	t.Helper()
	n, err := s.Pending(context.Background())
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	return n
}

func sendRaw(t testing.TB, l channels.Layer, c channels.Content) {
	t.Helper()
	if err := l.Send(context.Background(), delay.Channel, c); err != nil {
		t.Fatalf("send %v: %v", c, err)
	}
}

func seq(n int) string { return fmt.Sprintf("%05d", n) }
