package redislayer_test

import (
	"context"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/naming"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/layertest"
	"github.com/gochannels/channels/redislayer"
	"github.com/redis/rueidis"
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
	t.Parallel()
	url := testenv.RedisURL(t)
	conformance(t, []string{url}, layertest.Options{})
}

// Two hosts: channels and groups are sharded by consistent hashing, and
// receivers read every host.
func TestConformanceTwoHosts(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	conformance(t, []string{a.URL, b.URL}, layertest.Options{Sharded: true})
}

// Groups are placed on hosts by channels_redis's consistent hash, a
// process-specific channel by the hash of its process prefix; with
// MatchChannelsRedis the messages of an ordinary channel go to the hosts in turn.
func TestShardPlacement(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	prefix := testenv.Prefix("place")
	l := newLayer(t, redislayer.Config{Hosts: []string{a.URL, b.URL}, Prefix: prefix, MatchChannelsRedis: true})
	raws := []rueidis.Client{rawClient(t, a.URL), rawClient(t, b.URL)}
	ctx := t.Context()
	where := func(key string) []int {
		var on []int
		for i, c := range raws {
			if n, _ := c.Do(ctx, c.B().Exists().Key(key).Build()).AsInt64(); n == 1 {
				on = append(on, i)
			}
		}
		return on
	}
	for _, tc := range []struct{ channel, hashed string }{
		{"http.request", "http.request"},
		{"websocket.connect", "websocket.connect"},
		{"a", "a"},
		{"websocket.send.ABC!xyz", "websocket.send.ABC!"},
		{"websocket.send.ABC!other", "websocket.send.ABC!"},
		{"chat.q?abc", "chat.q?abc"},
	} {
		// Twice: with MatchChannelsRedis an ordinary channel's messages go to the
		// hosts in turn, as channels_redis sends them (its receivers read
		// the hosts in turn).
		for range 2 {
			if err := l.Send(ctx, tc.channel, channels.Content{}); err != nil {
				t.Fatal(err)
			}
		}
		key := prefix + naming.ProcessPrefix(tc.channel)
		if key == prefix {
			key = prefix + tc.channel
			if on := where(key); len(on) != 2 {
				t.Errorf("key %s of channel %s is on hosts %v after two sends; want both", key, tc.channel, on)
			}
			continue
		}
		want := redislayer.ConsistentHash(tc.hashed, 2)
		if on := where(key); len(on) != 1 || on[0] != want {
			t.Errorf("key %s of channel %s is on hosts %v; want only host %d", key, tc.channel, on, want)
		}
	}
	for _, g := range []string{"chat", "asgi.delay", "room-1"} {
		if err := l.GroupAdd(ctx, g, "x"); err != nil {
			t.Fatal(err)
		}
		want := redislayer.ConsistentHash(g, 2)
		if on := where(prefix + ":group:" + g); len(on) != 1 || on[0] != want {
			t.Errorf("group %s is on hosts %v; want only host %d", g, on, want)
		}
	}
}
