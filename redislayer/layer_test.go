package redislayer_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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

// declared is what a layer configured with cfg declares to the
// conformance suite: by default, with several hosts, an ordinary
// channel's messages go to the hosts in turn (no order across hosts, a
// capacity per host), and channel keys expire with their last message, so
// a group member whose only message expired is not evicted (L17, an
// expected failure for asgi_redis 1.0 too). GoReceiversOnly and Cluster
// mode declare nothing: the whole suite holds.
func declared(cfg redislayer.Config) layertest.Options {
	if cfg.GoReceiversOnly || cfg.Cluster {
		return layertest.Options{}
	}
	opts := layertest.Options{NoExpiryEviction: true}
	if len(cfg.Hosts) > 1 {
		opts.NormalShards = len(cfg.Hosts)
	}
	return opts
}

// conformance runs the suite on layers configured as cfg with the suite's
// settings, declaring what such a layer declares.
func conformance(t *testing.T, cfg redislayer.Config) {
	layertest.Run(t, func(t *testing.T, s layertest.Settings) channels.Layer {
		c := cfg
		c.Expiry, c.GroupExpiry = s.Expiry, s.GroupExpiry
		c.Capacity, c.ChannelCapacity = s.Capacity, s.ChannelCapacity
		return newLayer(t, c)
	}, declared(cfg))
}

func TestConformance(t *testing.T) {
	t.Parallel()
	conformance(t, redislayer.Config{Hosts: []string{testenv.RedisURL(t)}})
}

// With GoReceiversOnly channel keys live twice the expiry, so the whole
// suite holds, L17 included.
func TestConformanceGoReceiversOnly(t *testing.T) {
	t.Parallel()
	conformance(t, redislayer.Config{Hosts: []string{testenv.RedisURL(t)}, GoReceiversOnly: true})
}

// Two hosts: an ordinary channel's messages go to the hosts in turn,
// process-specific channels and groups to the host of their hash, and
// receivers read every host.
func TestConformanceTwoHosts(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	conformance(t, redislayer.Config{Hosts: []string{a.URL, b.URL}})
}

// Two hosts with GoReceiversOnly: every channel on the host of its hash,
// and the strict suite (FIFO and capacity across hosts, L17) holds.
func TestConformanceTwoHostsGoReceiversOnly(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	conformance(t, redislayer.Config{Hosts: []string{a.URL, b.URL}, GoReceiversOnly: true})
}

// Groups are placed on hosts by channels_redis's consistent hash, a
// process-specific channel by the hash of its process prefix, a
// single-reader channel by the hash of its name; the messages of an
// ordinary channel go to the hosts in turn, unless GoReceiversOnly
// places them by hash too.
func TestShardPlacement(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	raws := []rueidis.Client{rawClient(t, a.URL), rawClient(t, b.URL)}
	for _, goOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("GoReceiversOnly=%v", goOnly), func(t *testing.T) {
			prefix := testenv.Prefix("place")
			const expiry = 10 * time.Second
			l := newLayer(t, redislayer.Config{Hosts: []string{a.URL, b.URL}, Prefix: prefix, Expiry: expiry, GoReceiversOnly: goOnly})
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
				// Twice: by default an ordinary channel's messages go to
				// the hosts in turn, as channels_redis sends them (its
				// receivers read the hosts in turn).
				for range 2 {
					if err := l.Send(ctx, tc.channel, channels.Content{}); err != nil {
						t.Fatal(err)
					}
				}
				key := prefix + naming.ProcessPrefix(tc.channel)
				if key == prefix {
					key = prefix + tc.channel
				}
				// A channel key expires one expiry after its last
				// message, as channels_redis's do; with GoReceiversOnly
				// twice that, plus a second.
				for h, c := range raws {
					ttl, err := c.Do(ctx, c.B().Pttl().Key(key).Build()).AsInt64()
					switch {
					case err != nil || ttl == -1:
						t.Errorf("PTTL %s on host %d = %d, %v; want an expiry", key, h, ttl, err)
					case ttl == -2: // not on this host
					case !goOnly && ttl > expiry.Milliseconds():
						t.Errorf("PTTL %s on host %d = %d ms; want at most the expiry, %v", key, h, ttl, expiry)
					case goOnly && ttl <= 2*expiry.Milliseconds():
						t.Errorf("PTTL %s on host %d = %d ms; want more than twice the expiry", key, h, ttl)
					}
				}
				if !goOnly && !strings.ContainsAny(tc.channel, "!?") {
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
		})
	}
}

// By default a channel's turn is its own: its messages alternate between
// the hosts, starting with the first, however sends to several channels
// interleave, as a channels_redis receiver of the channel alternates.
func TestSendTurnPerChannel(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	prefix := testenv.Prefix("turn")
	l := newLayer(t, redislayer.Config{Hosts: []string{a.URL, b.URL}, Prefix: prefix})
	raws := []rueidis.Client{rawClient(t, a.URL), rawClient(t, b.URL)}
	ctx := t.Context()
	names := []string{"turn.a", "turn.b"}
	for i := range 4 {
		for _, n := range names {
			if err := l.Send(ctx, n, channels.Content{"i": int64(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, n := range names {
		for h, c := range raws {
			got, err := c.Do(ctx, c.B().Zcard().Key(prefix+n).Build()).AsInt64()
			if err != nil || got != 2 {
				t.Errorf("host %d holds %d messages of %s (%v); want 2 of its 4", h, got, n, err)
			}
		}
		// The first went to the first host.
		c := raws[0]
		zs, err := c.Do(ctx, c.B().Zrange().Key(prefix+n).Min("0").Max("0").Build()).AsStrSlice()
		if err != nil || len(zs) != 1 {
			t.Fatalf("ZRANGE %s on host 0 = %v, %v", n, zs, err)
		}
		if len(zs[0]) < 12 || zs[0][12:] != "\x81\xa1i\x00" { // {"i": 0}
			t.Errorf("the oldest message of %s on host 0 is %q; want the first sent (i=0)", n, zs[0])
		}
	}
}

// Receivers never return a message past its expiry, even while its key
// lives on because a later message renewed it (on both hosts, by default
// and with GoReceiversOnly): they return the live messages and nothing
// else.
func TestExpiredNeverDelivered(t *testing.T) {
	t.Parallel()
	a, b := testenv.StartRedis(t), testenv.StartRedis(t)
	for _, goOnly := range []bool{false, true} {
		t.Run(fmt.Sprintf("GoReceiversOnly=%v", goOnly), func(t *testing.T) {
			t.Parallel()
			const expiry = time.Second
			l := newLayer(t, redislayer.Config{Hosts: []string{a.URL, b.URL}, Expiry: expiry, GoReceiversOnly: goOnly})
			ctx := t.Context()
			send := func(what string) {
				t.Helper()
				for range 2 { // one on each host by default
					if err := l.Send(ctx, "exp.renewed", channels.Content{"what": what}); err != nil {
						t.Fatal(err)
					}
				}
			}
			send("old")
			time.Sleep(expiry * 6 / 10)
			send("new")
			time.Sleep(expiry / 2) // "old" has expired; its keys live on
			for range 2 {
				rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				_, c, err := l.Receive(rctx, "exp.renewed")
				cancel()
				if err != nil || c.String("what") != "new" {
					t.Fatalf("Receive = %v, %v; want a new message", c, err)
				}
			}
			if _, c, err := l.Poll(ctx, "exp.renewed"); err != nil || c != nil {
				t.Fatalf("Poll after the live messages = %v, %v; want nothing", c, err)
			}
		})
	}
}
