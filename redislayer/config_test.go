package redislayer_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		url  string
		want redislayer.Config
		err  string
	}{
		{
			url:  "redis://127.0.0.1:6379/0",
			want: redislayer.Config{Hosts: []string{"redis://127.0.0.1:6379/0"}},
		},
		{
			url: "redis://:secret@h:6380/2?prefix=chat&expiry=30&group_expiry=1h&capacity=200&dial_timeout=2s",
			want: redislayer.Config{
				Hosts:       []string{"redis://:secret@h:6380/2?dial_timeout=2s"},
				Prefix:      "chat",
				Expiry:      30 * time.Second,
				GroupExpiry: time.Hour,
				Capacity:    200,
			},
		},
		{
			url: "redis://a:6379/0,rediss://b:6380/0?prefix=x,unix:///run/redis.sock?db=3",
			want: redislayer.Config{
				Hosts:  []string{"redis://a:6379/0", "rediss://b:6380/0", "unix:///run/redis.sock?db=3"},
				Prefix: "x",
			},
		},
		{
			url: "redis://a/0?host=redis://b/0&host=redis://c/0&expiry=1.5&timeout=250ms&block_timeout=2",
			want: redislayer.Config{
				Hosts:        []string{"redis://a/0", "redis://b/0", "redis://c/0"},
				Expiry:       1500 * time.Millisecond,
				Timeout:      250 * time.Millisecond,
				BlockTimeout: 2 * time.Second,
			},
		},
		{
			url: "redis://a/0?channel_capacity=http.response!*:10&channel_capacity=http.request:100&max_message_size=-1&receive_conns=8&process_buffer=50&process_capacity=500&conn_buffer=4096&max_name_length=150",
			want: redislayer.Config{
				Hosts: []string{"redis://a/0"},
				ChannelCapacity: []channels.CapacityRule{
					{Pattern: "http.response!*", Capacity: 10},
					{Pattern: "http.request", Capacity: 100},
				},
				MaxMessageSize:  -1,
				ReceiveConns:    8,
				ProcessBuffer:   50,
				ProcessCapacity: 500,
				ConnBuffer:      4096,
				MaxNameLength:   150,
			},
		},
		{
			url: "redis://:pw@ignored/1?sentinel=s1:26379&sentinel=s2:26379&master_name=mymaster",
			want: redislayer.Config{
				Hosts:      []string{"redis://:pw@ignored/1"},
				Sentinels:  []string{"s1:26379", "s2:26379"},
				MasterName: "mymaster",
			},
		},
		{
			url: "redis+cluster://:pw@10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7001?prefix=chat",
			want: redislayer.Config{
				Hosts:   []string{"redis://:pw@10.0.0.1:7000", "redis://10.0.0.2:7000", "redis://10.0.0.3:7001"},
				Prefix:  "chat",
				Cluster: true,
			},
		},
		{
			url:  "redis://a:7000/0?cluster=true",
			want: redislayer.Config{Hosts: []string{"redis://a:7000/0"}, Cluster: true},
		},
		{url: "http://a/0", err: "scheme"},
		{url: "", err: "empty"},
		{url: "redis://a/0?expiry=soon", err: "expiry"},
		{url: "redis://a/0?capacity=many", err: "capacity"},
		{url: "redis://a/0?channel_capacity=nocolon", err: "channel_capacity"},
		{url: "redis://a/0?cluster=maybe", err: "cluster"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			got, err := redislayer.ParseURL(tc.url)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("ParseURL(%q) = %+v, %v; want an error about %s", tc.url, got, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreUnexported(channels.CapacityRule{})); diff != "" {
				t.Fatalf("ParseURL(%q) (-want +got):\n%s", tc.url, diff)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		cfg  redislayer.Config
		want string
	}{
		{"cluster with sentinels", redislayer.Config{Cluster: true, Sentinels: []string{"127.0.0.1:1"}, MasterName: "m"}, "Cluster"},
		{"sentinel without master", redislayer.Config{Sentinels: []string{"127.0.0.1:1"}}, "MasterName"},
		{"bad capacity rule", redislayer.Config{ChannelCapacity: []channels.CapacityRule{{Capacity: 3}}}, "no pattern"},
		{"bad URL", redislayer.Config{Hosts: []string{"redis://a:b:c/0"}}, "host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := redislayer.New(ctx, tc.cfg)
			if err == nil {
				l.Close()
				t.Fatalf("New(%+v) succeeded; want an error about %s", tc.cfg, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v; want an error about %s", err, tc.want)
			}
		})
	}
}

// New fails with ErrUnavailable, within the configured timeout, when no
// Redis answers.
func TestNewUnreachable(t *testing.T) {
	port := testenv.FreePort(t)
	start := time.Now()
	_, err := redislayer.New(context.Background(), redislayer.Config{
		Hosts:   []string{"redis://127.0.0.1:" + strconv.Itoa(port) + "/0"},
		Timeout: 300 * time.Millisecond,
	})
	if !errors.Is(err, redislayer.ErrUnavailable) {
		t.Fatalf("New with nothing listening = %v; want ErrUnavailable", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("New took %v to fail", el)
	}
}

// The consistent hash is channels_redis's _consistent_hash (values computed
// with channels_redis 4.0.0).
func TestConsistentHash(t *testing.T) {
	for _, tc := range []struct {
		name string
		want [5]int // ring sizes 1, 2, 3, 5, 7
	}{
		{"http.request", [5]int{0, 1, 2, 3, 4}},
		{"websocket.send.ABC!", [5]int{0, 1, 2, 3, 4}},
		{"chat", [5]int{0, 0, 0, 0, 1}},
		{"asgi.delay", [5]int{0, 1, 2, 3, 5}},
		{"a", [5]int{0, 1, 2, 4, 6}},
		{"websocket.connect", [5]int{0, 1, 2, 3, 4}},
		{strings.Repeat("x", 99), [5]int{0, 0, 0, 0, 0}},
	} {
		for i, ring := range []int{1, 2, 3, 5, 7} {
			if got := redislayer.ConsistentHash(tc.name, ring); got != tc.want[i] {
				t.Errorf("ConsistentHash(%q, %d) = %d; want %d", tc.name, ring, got, tc.want[i])
			}
		}
	}
}

// go_receivers_only sets Config.GoReceiversOnly; it is off by default.
func TestParseURLGoReceiversOnly(t *testing.T) {
	cfg, err := redislayer.ParseURL("redis://a:6379/0,redis://b:6379/0?go_receivers_only=true")
	if err != nil || !cfg.GoReceiversOnly {
		t.Fatalf("ParseURL = %+v, %v; want GoReceiversOnly", cfg, err)
	}
	for _, h := range cfg.Hosts {
		if strings.Contains(h, "go_receivers_only") {
			t.Errorf("host URL %q keeps the layer parameter", h)
		}
	}
	cfg, err = redislayer.ParseURL("redis://a:6379/0,redis://b:6379/0")
	if err != nil || cfg.GoReceiversOnly {
		t.Fatalf("ParseURL without go_receivers_only = %+v, %v; want it off", cfg, err)
	}
	if _, err := redislayer.ParseURL("redis://a/0?go_receivers_only=often"); err == nil {
		t.Fatal("go_receivers_only=often accepted")
	}
}
