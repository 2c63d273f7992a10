package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels/channelstest"
)

func recvEvent(t *testing.T, c *channelstest.WSClient) Event {
	t.Helper()
	var ev Event
	c.ReceiveJSON(&ev)
	return ev
}

func expect(t *testing.T, c *channelstest.WSClient, want Event) {
	t.Helper()
	if got := recvEvent(t, c); got != want {
		t.Fatalf("got %+v; want %+v", got, want)
	}
}

// The chat end to end over real sockets: gateway, in-memory layer, worker.
func TestChatOverSockets(t *testing.T) {
	srv := channelstest.NewServer(t, Router())

	alice := srv.DialWS("/chat/lobby/alice/")
	expect(t, alice, Event{Type: "join", Room: "lobby", User: "alice"})

	bob := srv.DialWS("/chat/lobby/bob/")
	expect(t, bob, Event{Type: "join", Room: "lobby", User: "bob"})
	expect(t, alice, Event{Type: "join", Room: "lobby", User: "bob"})

	carol := srv.DialWS("/chat/elsewhere/carol/")
	expect(t, carol, Event{Type: "join", Room: "elsewhere", User: "carol"})

	alice.SendJSON(map[string]string{"text": "hello, bob"})
	want := Event{Type: "message", Room: "lobby", User: "alice", Text: "hello, bob"}
	expect(t, alice, want)
	expect(t, bob, want)
	carol.ReceiveNothing(200 * time.Millisecond)

	// A malformed line gets an error to its sender only.
	bob.SendText("not json")
	if ev := recvEvent(t, bob); ev.Type != "error" {
		t.Fatalf("malformed line: got %+v; want an error event", ev)
	}
	alice.ReceiveNothing(100 * time.Millisecond)

	// Leaving is announced to the room.
	bob.Close(1000, "bye")
	expect(t, alice, Event{Type: "leave", Room: "lobby", User: "bob"})
	alice.SendJSON(map[string]string{"text": "anyone?"})
	expect(t, alice, Event{Type: "message", Room: "lobby", User: "alice", Text: "anyone?"})
}

func TestChatRefusesOtherPaths(t *testing.T) {
	srv := channelstest.NewServer(t, Router())
	for _, path := range []string{"/chat/lobby/", "/chat/bad room/x/", "/elsewhere/"} {
		c := srv.NewWSClient(path)
		if _, err := c.TryDial(); err == nil {
			t.Fatalf("%s: handshake accepted", path)
		}
		if c.Response == nil || c.Response.StatusCode != http.StatusForbidden {
			t.Fatalf("%s: response %v; want 403", path, c.Response)
		}
	}
}

func TestChatPage(t *testing.T) {
	srv := channelstest.NewServer(t, Router())
	resp, err := srv.HTTP.Client().Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `<script src="/static/channels/js/websocketbridge.js">`) || !strings.Contains(string(body), "new channels.WebSocketBridge(") || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / = %d %q:\n%.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, err = srv.HTTP.Client().Get(srv.URL + "/missing.html")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("GET /missing.html = %d; want 404", resp.StatusCode)
	}
}
