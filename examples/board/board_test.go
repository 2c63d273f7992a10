package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/session"
)

// boardServer is the board on a fresh SQLite file, served live with its
// relay running on the server's layer.
func boardServer(t *testing.T) (*App, *channelstest.Server) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	app, err := Open(ctx, filepath.Join(t.TempDir(), "board.db"), session.NewMemoryStore())
	if err != nil {
		t.Fatal(err)
	}
	srv := channelstest.NewServer(t, app.Router())
	relay := &binding.Relay{DB: app.DB, Layer: srv.Layer.(channels.GroupLayer), Bindings: []binding.Registration{app.Items}, PollInterval: 50 * time.Millisecond}
	done := make(chan error, 1)
	go func() { done <- relay.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		app.Close()
	})
	return app, srv
}

// loginSocket logs name in over HTTP and opens the board's socket with the
// session cookie.
func loginSocket(t *testing.T, srv *channelstest.Server, name string) *channelstest.WSClient {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: srv.HTTP.Client().Transport, Jar: jar}
	resp, err := hc.PostForm(srv.URL+"/login", url.Values{"name": {name}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("login %s: %s", name, resp.Status)
	}
	u, _ := url.Parse(srv.URL)
	ws := srv.NewWSClient(SocketPath)
	ws.Cookies = jar.Cookies(u)
	ws.Dial()
	return ws
}

func receivePayload(t *testing.T, ws *channelstest.WSClient) boardPayload {
	t.Helper()
	var env struct {
		Stream  string       `json:"stream"`
		Payload boardPayload `json:"payload"`
	}
	ws.ReceiveJSON(&env)
	if env.Stream != Stream {
		t.Fatalf("frame on stream %q", env.Stream)
	}
	return env.Payload
}

// The board's rules over real sockets: who may connect, which group each
// role's socket is in, what a user may change, and that a change a user
// may not make is answered with an error and leaves the row untouched.
func TestBoardPermissions(t *testing.T) {
	app, srv := boardServer(t)
	if status, _ := srv.NewWSClient(SocketPath).TryDial(); status != 403 {
		t.Fatalf("anonymous socket: status %d, want 403", status)
	}
	ada := loginSocket(t, srv, "ada")
	bob := loginSocket(t, srv, "bob")

	// bob may not change the admin notes (item 2), which he cannot see.
	bob.SendText(`{"stream":"items","payload":{"action":"update","pk":2,"data":{"title":"mine now"}}}`)
	if p := receivePayload(t, bob); p.Error != "denied" || p.Action != "update" {
		t.Fatalf("bob's update of an admin-only item: %+v, want a denied error", p)
	}
	bob.SendText(`{"stream":"items","payload":{"action":"delete","pk":2}}`)
	if p := receivePayload(t, bob); p.Error != "denied" {
		t.Fatalf("bob's delete of an admin-only item: %+v, want a denied error", p)
	}
	it, ok, err := app.item(context.Background(), 2)
	if err != nil || !ok || it.Title != "Admin notes" {
		t.Fatalf("admin notes after bob's attempts: %+v %v %v", it, ok, err)
	}

	// bob may change what he sees; the id in data is never written.
	bob.SendText(`{"stream":"items","payload":{"action":"update","pk":1,"data":{"title":"Hello","id":99}}}`)
	for _, ws := range []*channelstest.WSClient{ada, bob} {
		if p := receivePayload(t, ws); p.Action != "update" || string(p.PK) != "1" || p.Data.Title != "Hello" {
			t.Fatalf("after bob's update: %+v", p)
		}
	}

	// ada makes it admin-only: bob is told to delete it, ada to update it.
	ada.SendText(`{"stream":"items","payload":{"action":"update","pk":1,"data":{"admin_only":true}}}`)
	if p := receivePayload(t, bob); p.Action != "delete" || string(p.PK) != "1" {
		t.Fatalf("bob after the flip: %+v, want a delete", p)
	}
	if p := receivePayload(t, ada); p.Action != "update" || !p.Data.AdminOnly {
		t.Fatalf("ada after the flip: %+v, want an update", p)
	}
	// Now bob may not touch it.
	bob.SendText(`{"stream":"items","payload":{"action":"update","pk":1,"data":{"admin_only":false}}}`)
	if p := receivePayload(t, bob); p.Error != "denied" {
		t.Fatalf("bob's update of the now admin-only item: %+v, want denied", p)
	}
	ada.ReceiveNothing(200 * time.Millisecond)

	// The list bob's page loads holds only what he can see.
	var list []map[string]any
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Transport: srv.HTTP.Client().Transport, Jar: jar}
	if _, err := hc.PostForm(srv.URL+"/login", url.Values{"name": {"bob"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Get(srv.URL + "/items.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 0 {
		t.Fatalf("bob's list: %v, want none (both items are admin-only)", list)
	}
}
