package channelstest_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/worker"
)

// A server with no consumer runs the default routes: WebSockets are
// accepted and HTTP gets 404.
func TestNewServerDefaults(t *testing.T) {
	srv := channelstest.NewServer(t, nil)
	if !strings.HasPrefix(srv.URL, "http://127.0.0.1:") {
		t.Fatalf("URL %q", srv.URL)
	}
	if got, want := srv.WSURL("/x/"), "ws"+strings.TrimPrefix(srv.URL, "http")+"/x/"; got != want {
		t.Fatalf("WSURL %q, want %q", got, want)
	}
	resp, err := srv.HTTP.Client().Get(srv.URL + "/nothing/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "404") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	srv.DialWS("/anything/").ReceiveNothing(10e6)
	if srv.Worker == nil || srv.Gateway == nil || srv.Layer == nil {
		t.Fatal("Worker, Gateway and Layer must be set")
	}
}

// The server uses the given layer, applies the configuration hooks and
// routes consumers that list their channels.
func TestStartServerConfig(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{})
	t.Cleanup(func() { l.Close() })
	var hooked, workerHooked bool
	srv := channelstest.StartServer(t, channelstest.ServerConfig{
		Layer:    l,
		Consumer: upper{},
		Gateway:  func(g *gateway.Server) { hooked = true; g.RootPath = "/root" },
		Worker:   func(w *worker.Worker) { workerHooked = true; w.Concurrency = 1 },
	})
	if !hooked || !workerHooked || srv.Layer != channels.Layer(l) || srv.Gateway.RootPath != "/root" {
		t.Fatal("configuration not applied")
	}
	ws := srv.DialWS("/")
	ws.SendText("shout")
	if got := ws.ReceiveText(); got != "SHOUT" {
		t.Fatalf("got %q", got)
	}
}

// upper is a consumer that lists its channels instead of being a router.
type upper struct{}

func (upper) Channels() []string { return []string{"websocket.receive"} }

func (upper) Consume(ctx context.Context, m *channels.Message) error {
	return m.Reply(ctx, channels.Content{"text": strings.ToUpper(m.Content.String("text"))})
}

// NoWorker leaves the messages on the layer for the test to play the
// application.
func TestStartServerNoWorker(t *testing.T) {
	srv := channelstest.StartServer(t, channelstest.ServerConfig{NoWorker: true})
	if srv.Worker != nil {
		t.Fatal("Worker is set")
	}
	app := channelstest.NewClientOn(t, srv.Layer, channels.NewRouter())
	done := make(chan *channelstest.WSClient, 1)
	ws := srv.NewWSClient("/manual/")
	go func() {
		if status, err := ws.TryDial(); status == http.StatusSwitchingProtocols && err == nil {
			done <- ws
		}
		close(done)
	}()
	m := app.WaitMessage("websocket.connect")
	if m.Content.String("path") != "/manual/" {
		t.Fatalf("connect %v", m.Content)
	}
	if err := m.Reply(context.Background(), channels.Content{"text": "welcome"}); err != nil {
		t.Fatal(err)
	}
	ws = <-done
	if ws == nil {
		t.Fatal("the handshake failed")
	}
	if got := ws.ReceiveText(); got != "welcome" {
		t.Fatalf("got %q", got)
	}
}

func ExampleNewServer() {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": "echo: " + m.Content.String("text")})
	})

	// In a test, pass the test's *testing.T; everything stops when it ends.
	t := &exampleTB{}
	defer t.end()
	srv := channelstest.NewServer(t, r)
	ws := srv.DialWS("/echo/")
	ws.SendText("hello")
	fmt.Println(ws.ReceiveText())
	fmt.Println("closed with", ws.Close(1000, "bye"))
	// Output:
	// echo: hello
	// closed with 1000
}

// exampleTB stands in for *testing.T in examples, running the cleanups at
// the end.
type exampleTB struct{ cleanups []func() }

func (*exampleTB) Helper()                      {}
func (*exampleTB) Output() io.Writer            { return io.Discard }
func (*exampleTB) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
func (t *exampleTB) Cleanup(f func())           { t.cleanups = append(t.cleanups, f) }

func (t *exampleTB) end() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// Checklist C.37: with no websocket.connect route of the application's, the
// default route accepts every connection.
func TestC37DefaultConnectRouteAccepts(t *testing.T) {
	r := channels.NewRouter()
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"text": "got " + m.Content.String("text")})
	})
	srv := channelstest.NewServer(t, r)
	ws := srv.DialWS("/any/path/")
	if ws.Response == nil || ws.Response.StatusCode != 101 {
		t.Fatalf("handshake response %v; want 101", ws.Response)
	}
	ws.SendText("x")
	if got := ws.ReceiveText(); got != "got x" {
		t.Fatalf("got %q", got)
	}
}
