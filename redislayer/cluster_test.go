package redislayer_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/naming"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
	"github.com/redis/rueidis"
)

// The conformance suite on a Redis Cluster of three masters: channels,
// process prefixes and groups spread over the nodes by hash slot.
func TestConformanceCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartRedisCluster(t, 3)
	conformance(t, redislayer.Config{Hosts: cluster.URLs(), Cluster: true})
}

// clusterClient is a plain cluster client for looking at what the layer
// stored.
func clusterClient(t *testing.T, c *testenv.RedisCluster) rueidis.Client {
	t.Helper()
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, strings.TrimSuffix(strings.TrimPrefix(n.URL, "redis://"), "/0"))
	}
	client, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

// In Cluster mode every key carries a hash tag: a channel's key and its
// expiry markers (for process-specific channels, those of every channel
// under the prefix) share one slot, and the layer's idea of a key's slot is the cluster's. The
// layer is opened with the redis+cluster:// URL form.
func TestClusterKeys(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartRedisCluster(t, 3)
	raw := clusterClient(t, cluster)
	ctx := t.Context()
	prefix := testenv.Prefix("ckeys")
	var hosts []string
	for _, u := range cluster.URLs() {
		hosts = append(hosts, strings.TrimSuffix(strings.TrimPrefix(u, "redis://"), "/0"))
	}
	l, err := redislayer.Open(ctx, "redis+cluster://"+strings.Join(hosts, ",")+"?prefix="+prefix+"&expiry=1")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer func() { _ = l.Flush(context.Background()) }()
	proc, _ := l.NewChannel(ctx, "ckeys.gw!")
	for _, ch := range []string{"ckeys.work", proc} {
		if err := l.Send(ctx, ch, channels.Content{"x": int64(1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.GroupAdd(ctx, "ckeys-room", "ckeys.work"); err != nil {
		t.Fatal(err)
	}
	pp := naming.ProcessPrefix(proc)
	slot := func(key string) int64 {
		t.Helper()
		n, err := raw.Do(ctx, raw.B().ClusterKeyslot().Key(key).Build()).AsInt64()
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		key  string
		same []string // keys that must share its slot
	}{
		{prefix + "{ckeys.work}", []string{prefix + ":expired:{ckeys.work}"}},
		{prefix + "{" + pp + "}", []string{prefix + ":expired:{" + pp + "}" + proc[len(pp):]}},
		{prefix + ":group:{ckeys-room}", nil},
	} {
		if n, err := raw.Do(ctx, raw.B().Exists().Key(tc.key).Build()).AsInt64(); err != nil || n != 1 {
			t.Errorf("key %s does not exist (%v)", tc.key, err)
		}
		for _, k := range tc.same {
			if slot(k) != slot(tc.key) {
				t.Errorf("%s is in slot %d, %s in slot %d", k, slot(k), tc.key, slot(tc.key))
			}
		}
	}
	// The channels land on different nodes (the slots differ), and a
	// receive over both reads both.
	if slot(prefix+"{ckeys.work}") == slot(prefix+"{"+pp+"}") {
		t.Logf("both channels hash to slot %d", slot(prefix+"{ckeys.work}"))
	}
	seen := map[string]bool{}
	for range 2 {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ch, _, err := l.Receive(rctx, "ckeys.work", proc)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		seen[ch] = true
	}
	if !seen["ckeys.work"] || !seen[proc] {
		t.Fatalf("received from %v; want both channels", seen)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range raw.Nodes() {
		keys, err := n.Do(ctx, n.B().Keys().Pattern(prefix+"*").Build()).AsStrSlice()
		keys = slices.DeleteFunc(keys, func(k string) bool { return k == prefix+":{epoch}" }) // see OnDataLoss
		if err != nil || len(keys) > 0 {
			t.Errorf("keys left after Flush on a node: %v (%v)", keys, err)
		}
	}
}

// Cluster mode refuses a server that is not a cluster.
func TestClusterModeNeedsACluster(t *testing.T) {
	url := testenv.RedisURL(t)
	l, err := redislayer.New(t.Context(), redislayer.Config{Hosts: []string{url}, Cluster: true})
	if err == nil {
		l.Close()
		t.Fatal("Cluster mode on a standalone server succeeded")
	}
	if !strings.Contains(err.Error(), "not a Redis Cluster") {
		t.Fatalf("New: %v; want an error saying the server is not a Redis Cluster", err)
	}
}
