package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// startProcess runs bin with args, stopped when the test ends.
func startProcess(t *testing.T, name, bin string, args ...string) *testenv.Output {
	t.Helper()
	return testenv.StartProcess(t, "", name, bin, args...)
}

// The production shape: the gateway and two workers run as separate
// processes and meet only in Redis; a line one client sends reaches the
// others.
func TestChatMultiProcessOverRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the chat binary")
	}
	redisURL := testenv.RedisURL(t)
	u, err := url.Parse(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("prefix", strings.TrimSuffix(testenv.Prefix("chatmp"), ":"))
	u.RawQuery = q.Encode()
	layerURL := u.String()
	t.Cleanup(func() {
		l, err := redislayer.Open(context.Background(), layerURL)
		if err == nil {
			_ = l.Flush(context.Background())
			l.Close()
		}
	})

	bin := testenv.GoBuild(t, "./examples/chat")
	port := testenv.FreePort(t)
	gw := startProcess(t, "gateway", bin, "gateway", "--layer", layerURL, "-p", fmt.Sprint(port), "-v", "1")
	startProcess(t, "worker 1", bin, "runworker", "--layer", layerURL, "--threads", "4")
	startProcess(t, "worker 2", bin, "runworker", "--layer", layerURL, "--threads", "4")

	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not listen on %s:\n%s", addr, gw.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	base := "ws://" + addr
	alice := channelstest.DialWS(t, base+"/chat/lobby/alice/")
	expect(t, alice, Event{Type: "join", Room: "lobby", User: "alice"})
	bob := channelstest.DialWS(t, base+"/chat/lobby/bob/")
	expect(t, bob, Event{Type: "join", Room: "lobby", User: "bob"})
	expect(t, alice, Event{Type: "join", Room: "lobby", User: "bob"})

	for i := range 20 {
		text := fmt.Sprintf("line %d", i)
		bob.SendJSON(map[string]string{"text": text})
		want := Event{Type: "message", Room: "lobby", User: "bob", Text: text}
		expect(t, alice, want)
		expect(t, bob, want)
	}
	alice.Close(1000, "")
	expect(t, bob, Event{Type: "leave", Room: "lobby", User: "alice"})

	// The gateway's access log shows the sockets.
	if log := gw.String(); !strings.Contains(log, "WSCONNECT /chat/lobby/alice/") {
		t.Errorf("gateway access log lacks the connection:\n%s", log)
	}
}
