package redislayer_test

import (
	"context"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/layertest"
	"github.com/gochannels/channels/redislayer"
)

// newLayer returns a layer on hosts with a random prefix, closed when the
// test ends.
func newLayer(t testing.TB, cfg redislayer.Config) *redislayer.Layer {
	t.Helper()
	if cfg.Prefix == "" {
		cfg.Prefix = testenv.Prefix("rl")
	}
	l, err := redislayer.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("redislayer.New: %v", err)
	}
	t.Cleanup(func() {
		_ = l.Flush(context.Background())
		_ = l.Close()
	})
	return l
}

func conformance(t *testing.T, hosts []string, opts layertest.Options) {
	layertest.Run(t, func(t *testing.T, s layertest.Settings) channels.Layer {
		return newLayer(t, redislayer.Config{
			Hosts:           hosts,
			Expiry:          s.Expiry,
			GroupExpiry:     s.GroupExpiry,
			Capacity:        s.Capacity,
			ChannelCapacity: s.ChannelCapacity,
		})
	}, opts)
}

func TestConformance(t *testing.T) {
	url := testenv.RedisURL(t)
	conformance(t, []string{url}, layertest.Options{})
}

// Two hosts: channels and groups are sharded by consistent hashing, and
// receivers read every host.
func TestConformanceTwoHosts(t *testing.T) {
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	conformance(t, []string{a.URL, b.URL}, layertest.Options{Sharded: true})
}
