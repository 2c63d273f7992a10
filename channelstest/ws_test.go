package channelstest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// echoRouter accepts sockets on every path but /private/ (rejected) and
// /busy/ (answered with 4000 after the first frame), echoes text and
// bytes, and records each connect's headers on connects.
func echoRouter(connects chan<- channels.Content) *channels.Router {
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		if connects != nil {
			connects <- m.Content
		}
		if m.Content.String("path") == "/private/" {
			return channels.ErrDenyConnection
		}
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		switch {
		case m.Content.String("path") == "/busy/":
			return &channels.CloseError{Code: 4000}
		case m.Content.Has("bytes"):
			return m.Reply(ctx, channels.Content{"bytes": m.Content.Bytes("bytes")})
		case m.Content.String("text") == "silence":
			return nil
		}
		return m.Reply(ctx, channels.Content{"text": m.Content.String("text")})
	})
	return r
}

func header(c channels.Content, name string) []string {
	var out []string
	hs, _ := c["headers"].([]any)
	for _, h := range hs {
		p := h.([]any)
		if string(p[0].([]byte)) == name {
			out = append(out, string(p[1].([]byte)))
		}
	}
	return out
}

// Header and Cookies reach websocket.connect; a Cookie already in Header
// comes first.
func TestWSClientHeadersAndCookies(t *testing.T) {
	connects := make(chan channels.Content, 1)
	srv := channelstest.NewServer(t, echoRouter(connects))
	ws := srv.NewWSClient("/chat/?room=1")
	ws.Header.Set("X-Test", "yes")
	ws.Header.Set("Cookie", "s=0")
	ws.Cookies = append(ws.Cookies, &http.Cookie{Name: "a", Value: "1"}, &http.Cookie{Name: "sessionid", Value: "abc"})
	ws.Dial()
	c := <-connects
	if got := header(c, "x-test"); len(got) != 1 || got[0] != "yes" {
		t.Errorf("x-test %q", got)
	}
	if got := header(c, "cookie"); len(got) != 1 || got[0] != "s=0; a=1; sessionid=abc" {
		t.Errorf("cookie %q", got)
	}
	if c.String("path") != "/chat/" || string(c.Bytes("query_string")) != "room=1" {
		t.Errorf("path %q query %q", c.String("path"), c.Bytes("query_string"))
	}
}

// Frames of both kinds, JSON helpers and ReceiveNothing.
func TestWSClientFrames(t *testing.T) {
	srv := channelstest.NewServer(t, echoRouter(nil))
	ws := srv.DialWS("/")
	ws.SendText("hello")
	if got := ws.ReceiveText(); got != "hello" {
		t.Fatalf("text %q", got)
	}
	ws.SendBytes([]byte{0, 1, 2})
	if got := ws.ReceiveBytes(); string(got) != "\x00\x01\x02" {
		t.Fatalf("bytes %q", got)
	}
	ws.SendJSON(map[string]any{"n": 7, "s": "x"})
	var v struct {
		N int    `json:"n"`
		S string `json:"s"`
	}
	ws.ReceiveJSON(&v)
	if v.N != 7 || v.S != "x" {
		t.Fatalf("json %+v", v)
	}
	ws.SendText("silence")
	ws.ReceiveNothing(50 * time.Millisecond)
	if f := (channelstest.WSFrame{Binary: true, Data: []byte("a")}); f.String() != `bytes "a"` {
		t.Fatalf("String %q", f.String())
	}
}

// Close returns the server's echo, which is also the disconnect's code;
// WaitClosed and CloseStatus report a close the server started.
func TestWSClientClose(t *testing.T) {
	srv := channelstest.NewServer(t, echoRouter(nil))
	ws := srv.DialWS("/")
	if got := ws.CloseStatus(); got != 0 {
		t.Fatalf("CloseStatus %d on an open socket", got)
	}
	if got := ws.Close(4001, "done"); got != 4001 {
		t.Fatalf("Close returned %d, want the echo 4001", got)
	}
	if got := ws.CloseStatus(); got != 4001 {
		t.Fatalf("CloseStatus %d after Close", got)
	}

	busy := srv.DialWS("/busy/")
	busy.SendText("x")
	if got := busy.WaitClosed(); got != 4000 {
		t.Fatalf("WaitClosed %d, want 4000", got)
	}
}

// TryDial reports a rejected handshake's status and keeps its body.
func TestWSClientRejected(t *testing.T) {
	srv := channelstest.NewServer(t, echoRouter(nil))
	ws := srv.NewWSClient("/private/")
	status, err := ws.TryDial()
	if status != http.StatusForbidden || err == nil {
		t.Fatalf("status %d err %v, want 403 and an error", status, err)
	}
	body, _ := io.ReadAll(ws.Response.Body)
	if !strings.Contains(string(body), "Access denied") {
		t.Fatalf("body %q", body)
	}
}

// Subprotocols are offered in order and the chosen one is reported.
func TestWSClientSubprotocols(t *testing.T) {
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Consumer: echoRouter(nil),
		Gateway:  func(g *gateway.Server) { g.Subprotocols = []string{"v2", "v1"} },
	})
	ws := srv.NewWSClient("/")
	ws.Subprotocols = []string{"v1", "v2"}
	ws.Dial()
	if got := ws.Subprotocol(); got != "v1" {
		t.Fatalf("subprotocol %q, want v1", got)
	}
}

// The failures a WSClient reports must say what happened. They are checked
// in a child process, since they fail the test they happen in.
func TestWSClientFailures(t *testing.T) {
	for name, want := range map[string]string{
		"rejected":        "HTTP status 403",
		"receive-timeout": "expected a frame from ws://",
		"receive-closed":  "the connection closed with code 4000",
		"not-nothing":     `expected no frame within 1s, got text "x"`,
		"not-text":        "expected a text frame, got bytes",
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestWSClientFailureChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "CHANNELSTEST_WS_FAIL="+name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the client did not fail the test:\n%s", out)
			}
			if !strings.Contains(string(out), want) {
				t.Fatalf("failure does not say %q:\n%s", want, out)
			}
		})
	}
}

func TestWSClientFailureChild(t *testing.T) {
	mode := os.Getenv("CHANNELSTEST_WS_FAIL")
	if mode == "" {
		t.Skip("run by TestWSClientFailures")
	}
	srv := channelstest.NewServer(t, echoRouter(nil))
	switch mode {
	case "rejected":
		srv.DialWS("/private/")
	case "receive-timeout":
		ws := srv.DialWS("/")
		ws.Timeout = 50 * time.Millisecond
		ws.Receive()
	case "receive-closed":
		ws := srv.DialWS("/busy/")
		ws.SendText("x")
		ws.Receive()
	case "not-nothing":
		ws := srv.DialWS("/")
		ws.SendText("x")
		ws.ReceiveNothing(time.Second)
	case "not-text":
		ws := srv.DialWS("/")
		ws.SendBytes([]byte("b"))
		ws.ReceiveText()
	}
	fmt.Println("not reached")
}
