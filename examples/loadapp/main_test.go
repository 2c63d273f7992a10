package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/session"
)

func TestProtocol(t *testing.T) {
	srv := channelstest.NewServer(t, Router())

	resp, err := srv.HTTP.Client().Get(srv.URL + "/http/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("GET /http/ = %d %q", resp.StatusCode, body)
	}

	echo := srv.DialWS("/echo/")
	echo.SendText(`{"seq":1}`)
	if got := echo.ReceiveText(); got != `{"seq":1}` {
		t.Fatalf("echo = %q", got)
	}

	a, b := srv.DialWS("/fanout/r1/"), srv.DialWS("/fanout/r1/")
	other := srv.DialWS("/fanout/r2/")
	a.SendText("x")
	if a.ReceiveText() != "x" || b.ReceiveText() != "x" {
		t.Fatal("fanout did not reach both members")
	}
	other.ReceiveNothing(100e6)
}

// TestEnforceOrderingBroadcastsInSendOrder plays a publisher whose frames 1
// and 2 reach the workers the wrong way round, as they do when two worker
// processes consume one connection's frames at once.
func TestEnforceOrderingBroadcastsInSendOrder(t *testing.T) {
	for _, ordered := range []bool{false, true} {
		var mw channels.Middleware
		if ordered {
			var err error
			mw, err = (&session.Manager{Store: session.NewMemoryStore()}).EnforceOrdering(session.StrictOrdering)
			if err != nil {
				t.Fatal(err)
			}
		}
		c := channelstest.NewClient(t, NewRouter(mw))
		s := channelstest.NewSocket(c, "/fanout/r1/")
		s.Connect() // the socket is in the room: it hears its own frames
		first := s.Prepare("websocket.receive", channels.Content{"text": "1"})
		second := s.Prepare("websocket.receive", channels.Content{"text": "2"})
		for _, m := range []channels.Content{second, first} {
			if err := c.SendAndConsume("websocket.receive", m); err != nil {
				t.Fatalf("ordered=%v: %v", ordered, err)
			}
		}
		got := c.Receive().String("text") + c.Receive().String("text")
		want := "21" // arrival order
		if ordered {
			want = "12" // send order
		}
		if got != want {
			t.Errorf("ordered=%v: broadcast %q, want %q", ordered, got, want)
		}
		c.ReceiveNothing()
	}
}

func TestCommandLineFlags(t *testing.T) {
	t.Setenv(cli.LayerEnv, "redis://from-env:6379/1")
	for _, tc := range []struct {
		args    []string
		rest    []string
		ordered bool
		layer   string
	}{
		{[]string{"runworker", "--enforce-ordering", "--layer", "redis://a:1/0?prefix=x"}, []string{"runworker", "--layer", "redis://a:1/0?prefix=x"}, true, "redis://a:1/0?prefix=x"},
		{[]string{"-enforce-ordering", "runserver", "-layer=memory://"}, []string{"runserver", "-layer=memory://"}, true, "memory://"},
		{[]string{"gateway", "-p", "8000"}, []string{"gateway", "-p", "8000"}, false, "redis://from-env:6379/1"},
	} {
		rest, ordered := takeFlag(tc.args, "enforce-ordering")
		if !slices.Equal(rest, tc.rest) || ordered != tc.ordered {
			t.Errorf("takeFlag(%q) = %q, %v; want %q, %v", tc.args, rest, ordered, tc.rest, tc.ordered)
		}
		if got := layerURL(rest); got != tc.layer {
			t.Errorf("layerURL(%q) = %q, want %q", rest, got, tc.layer)
		}
	}
}

func TestOrderingSessionsLiveWithTheLayer(t *testing.T) {
	ctx := context.Background()
	mem, err := openStore(ctx, "memory://")
	if _, ok := mem.(*session.MemoryStore); !ok || err != nil {
		t.Errorf("openStore(memory://) = %T, %v; want a memory store", mem, err)
	}
	// A layer URL, with the layer's own options, as compare.sh passes it.
	store, err := openStore(ctx, testenv.RedisURL(t)+"?prefix="+strings.TrimSuffix(testenv.Prefix("loadapp"), ":")+"&capacity=100")
	if err != nil {
		t.Fatal(err)
	}
	rs, ok := store.(*session.RedisStore)
	if !ok {
		t.Fatalf("openStore(redis://…) = %T, want a Redis store", store)
	}
	defer rs.Close()
	if _, found, err := rs.FindCtx(ctx, testenv.Prefix("absent")); found || err != nil {
		t.Errorf("FindCtx of an absent key = %v, %v; want not found, no error", found, err)
	}
}
