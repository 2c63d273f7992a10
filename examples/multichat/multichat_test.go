package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"

	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/session"
)

type frame struct {
	Stream  string          `json:"stream"`
	Payload json.RawMessage `json:"payload"`
}

func receive(t *testing.T, ws *channelstest.WSClient) string {
	t.Helper()
	var f frame
	ws.ReceiveJSON(&f)
	return f.Stream + " " + string(f.Payload)
}

func expect(t *testing.T, ws *channelstest.WSClient, want string) {
	t.Helper()
	if got := receive(t, ws); got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// browser is an HTTP client with its own cookies.
type browser struct {
	t   *testing.T
	srv *channelstest.Server
	hc  *http.Client
}

func newBrowser(t *testing.T, srv *channelstest.Server) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, srv: srv, hc: &http.Client{Transport: srv.HTTP.Client().Transport, Jar: jar}}
}

func (b *browser) post(path string, form url.Values) string {
	b.t.Helper()
	resp, err := b.hc.PostForm(b.srv.URL+path, form)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		b.t.Fatalf("POST %s: %s %s", path, resp.Status, body)
	}
	return string(body)
}

// socket opens /multi/ with the browser's cookies.
func (b *browser) socket() *channelstest.WSClient {
	b.t.Helper()
	u, _ := url.Parse(b.srv.URL)
	ws := b.srv.NewWSClient("/multi/")
	ws.Cookies = b.hc.Jar.Cookies(u)
	ws.Dial()
	return ws
}

// The multiplexed chat end to end over real sockets: login form, session
// cookie, demultiplexed streams, logout closing the open sockets.
func TestMultichat(t *testing.T) {
	srv := channelstest.NewServer(t, New(session.NewMemoryStore()).Router())

	ada := newBrowser(t, srv)
	if page := ada.post("/login", url.Values{"name": {"ada"}}); !strings.Contains(page, `<strong id="me">ada</strong>`) {
		t.Fatalf("after login the page is:\n%s", page)
	}
	adaWS := ada.socket()
	expect(t, adaWS, `presence {"user":"ada","event":"join"}`)

	bob := newBrowser(t, srv)
	bob.post("/login", url.Values{"name": {"bob"}})
	bobWS := bob.socket()
	expect(t, bobWS, `presence {"user":"bob","event":"join"}`)
	expect(t, adaWS, `presence {"user":"bob","event":"join"}`)

	// The user comes from the session, not from the frame.
	adaWS.SendText(`{"stream":"messages","payload":{"text":"hello bob","user":"mallory"}}`)
	for _, ws := range []*channelstest.WSClient{adaWS, bobWS} {
		expect(t, ws, `messages {"user":"ada","text":"hello bob"}`)
	}

	// Without a login there is no socket.
	if status, _ := srv.NewWSClient("/multi/").TryDial(); status != 403 {
		t.Fatalf("anonymous socket: status %d, want 403", status)
	}

	// Logging out closes ada's socket; bob sees her leave.
	if page := ada.post("/logout", nil); !strings.Contains(page, `action="/login"`) {
		t.Fatalf("after logout the page is:\n%s", page)
	}
	if code := adaWS.WaitClosed(); code != session.DefaultLogoutCloseCode {
		t.Fatalf("ada's socket closed with %d, want %d", code, session.DefaultLogoutCloseCode)
	}
	expect(t, bobWS, `presence {"user":"ada","event":"leave"}`)
	u, _ := url.Parse(srv.URL)
	ws := srv.NewWSClient("/multi/")
	ws.Cookies = ada.hc.Jar.Cookies(u)
	if status, _ := ws.TryDial(); status != 403 {
		t.Fatalf("socket after logout: status %d, want 403", status)
	}
}
