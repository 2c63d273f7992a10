package js_test

import (
	"context"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/cli"
	"github.com/gochannels/channels/internal/browsertest"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/js"
)

// serverEnv makes the test binary a server: "runserver <addr>" of the
// application below, so that a test can kill it and start it again on the
// same port.
const serverEnv = "CHANNELS_JS_TEST_SERVER"

// serverWorkersEnv, when set, runs that many consumers at once instead of
// one.
const serverWorkersEnv = "CHANNELS_JS_TEST_SERVER_WORKERS"

func TestMain(m *testing.M) {
	if addr := os.Getenv(serverEnv); addr != "" {
		os.Args = []string{"jstest", "runserver", "--nodelay", "--nothreading", addr}
		if n := os.Getenv(serverWorkersEnv); n != "" {
			os.Args = []string{"jstest", "runserver", "--nodelay", "--workers", n, addr}
		}
		(&cli.App{Router: testRouter(), HTTP: testPages()}).Main()
		return
	}
	os.Exit(m.Run())
}

// testRouter is the application the pages talk to. On / and /echo/ it
// accepts every socket and answers each text frame t with
// {"echo": t}, except for the commands "cmd:close:<code>" (close the
// socket with code) and "cmd:frames" (send the frames of the spec's tested
// behaviours, then a non-JSON and a binary frame). /reject/ refuses every
// handshake. One consumer runs at a time (--nothreading), so echoes come
// back in the order the frames arrived.
func testRouter() *channels.Router {
	const path = `^/(?:echo/)?$`
	r := channels.NewRouter()
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		return m.Reply(ctx, channels.Content{"accept": true})
	}, channels.Path(path))
	r.RouteFunc("websocket.receive", func(ctx context.Context, m *channels.Message) error {
		text := m.Content.String("text")
		if code, ok := strings.CutPrefix(text, "cmd:close:"); ok {
			n, _ := strconv.Atoi(code)
			return m.Reply(ctx, channels.Content{"close": n})
		}
		if text == "cmd:frames" {
			for _, f := range []string{
				`{"a":1}`, `{"b":2}`,
				`{"stream":"nobody","payload":{"lost":true}}`,
				`{"x":1}`,
				`{"stream":"stream1","payload":{"id":1}}`,
				`{"stream":"stream2","payload":[2]}`,
				`not json`,
			} {
				if err := m.Reply(ctx, channels.Content{"text": f}); err != nil {
					return err
				}
			}
			return m.Reply(ctx, channels.Content{"bytes": []byte{1, 2, 3}})
		}
		b, _ := json.Marshal(map[string]string{"echo": text})
		return m.Reply(ctx, channels.Content{"text": string(b)})
	}, channels.Path(path))
	r.Route("websocket.connect", channels.ConsumerFunc(func(context.Context, *channels.Message) error {
		return channels.ErrDenyConnection
	}))
	return r
}

// harness is the page code shared by the test pages: start(url, options)
// connects a new bridge B and records what reaches it in a new T.
const harness = `
window.start = function (url, options) {
  window.T = {opens: 0, closes: [], errors: [], calls: [], raw: [], reconnecting: 0};
  const b = new channels.WebSocketBridge({onRawFrame: (d) => T.raw.push(typeof d === "string" ? d : "binary:" + Array.from(new Uint8Array(d)).join(","))});
  b.connect(url, undefined, options);
  b.socket.addEventListener("open", () => T.opens++);
  b.socket.addEventListener("close", (e) => T.closes.push(e.code));
  b.socket.addEventListener("error", (e) => T.errors.push(e.code || e.type));
  b.socket.addEventListener("reconnecting", () => T.reconnecting++);
  b.listen((obj, stream) => T.calls.push(["default", obj, stream]));
  window.B = b;
};
document.getElementById("ready").textContent = "ready";
`

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>WebSocketBridge</title>{{.Script}}</head>
<body><div id="ready"></div>
{{if .Module}}<script type="module">
import * as channels from "/static/channels/js/websocketbridge.mjs";
window.channels = channels;
{{.Harness}}
</script>{{else}}<script>{{.Harness}}</script>{{end}}
</body></html>`))

// testPages serves /classic (the classic build, by js.ScriptTag, so with
// its integrity hash) and /module (the ES module).
func testPages() http.Handler {
	mux := http.NewServeMux()
	page := func(module bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			data := map[string]any{"Module": module, "Harness": template.JS(harness)}
			if !module {
				data["Script"] = js.ScriptTag()
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			if err := pageTemplate.Execute(w, data); err != nil {
				http.Error(w, err.Error(), 500)
			}
		}
	}
	mux.Handle("GET /classic", page(false))
	mux.Handle("GET /module", page(true))
	return mux
}

// server is the test binary running testRouter, killable and restartable.
type server struct {
	t    *testing.T
	addr string
	env  []string
	cmd  *exec.Cmd
	out  *testenv.Output
}

// startServer starts the server with env added to the test's environment.
func startServer(t *testing.T, env ...string) *server {
	s := &server{t: t, addr: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)), env: env, out: &testenv.Output{}}
	s.start()
	t.Cleanup(func() {
		if s.cmd != nil {
			s.kill()
		}
		if t.Failed() {
			t.Logf("server output:\n%s", s.out.String())
		}
	})
	return s
}

func (s *server) start() {
	s.t.Helper()
	s.cmd = exec.Command(os.Args[0])
	s.cmd.Env = append(append(os.Environ(), serverEnv+"="+s.addr), s.env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	testenv.WaitHTTP(s.t, "http://"+s.addr+js.Prefix+js.Classic, 20*time.Second, s.out.String)
}

// kill ends the server process at once (SIGKILL): no close frames.
func (s *server) kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	_ = s.cmd.Wait()
	s.cmd = nil
}

func TestBridgeInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process and Chromium")
	}
	testenv.Chromium(t)
	srv := startServer(t)
	base := "http://" + srv.addr
	b := browsertest.Start(t, srv.out.String)
	// Short delays keep the test quick; the defaults are tested in Node.
	const fast = `{minReconnectionDelay: 200, maxReconnectionDelay: 1000, connectionTimeout: 2000}`

	// The browser's helpers fail the parent test, so the two builds run
	// one after the other rather than as subtests.
	for _, kind := range []string{"classic", "module"} {
		func() {
			tab := b.Tab(kind)
			tab.Open(base+"/"+kind, "body")
			tab.WaitText("#ready", "ready")

			// A relative URL: the spec's tested behaviours.
			tab.Eval(`start("/echo/", `+fast+`)`, nil)
			tab.WaitTrue(`T.opens === 1`)
			var url string
			tab.Eval(`B.socket.url`, &url)
			if want := "ws://" + srv.addr + "/echo/"; url != want {
				t.Fatalf("relative URL resolved to %q, want %q", url, want)
			}
			tab.Eval(`B.demultiplex("stream1", (p, s) => T.calls.push(["stream1", p, s])), B.demultiplex("stream2", (p, s) => T.calls.push(["stream2", p, s])), B.socket.send("cmd:frames")`, nil)
			tab.WaitTrue(`T.raw.length === 2`)
			var calls, raw any
			tab.Eval(`T.calls`, &calls)
			tab.Eval(`T.raw`, &raw)
			wantCalls := `[["default",{"a":1},null],["default",{"b":2},null],["default",{"x":1},null],["stream1",{"id":1},"stream1"],["stream2",[2],"stream2"]]`
			if got := mustJSON(t, calls); got != wantCalls {
				t.Errorf("deliveries:\n got %s\nwant %s", got, wantCalls)
			}
			if got := mustJSON(t, raw); got != `["not json","binary:1,2,3"]` {
				t.Errorf("raw frames: %s", got)
			}

			// send and stream().send transmit exactly JSON.stringify of
			// the object and of {stream, payload}; the server echoes the
			// frame it received.
			tab.Eval(`T.calls = [], B.send({z: 1, a: [1, "é"], n: null}), B.stream("stream1").send({id: 7, t: "x"})`, nil)
			tab.WaitTrue(`T.calls.length === 2`)
			var echoes []string
			tab.Eval(`T.calls.map((c) => c[1].echo)`, &echoes)
			want := []string{`{"z":1,"a":[1,"é"],"n":null}`, `{"stream":"stream1","payload":{"id":7,"t":"x"}}`}
			if mustJSON(t, echoes) != mustJSON(t, want) {
				t.Errorf("transmitted %q, want %q", echoes, want)
			}

			// A close with 4001 is final: no reconnect.
			tab.Eval(`B.socket.send("cmd:close:4001")`, nil)
			tab.WaitTrue(`T.closes.length === 1`)
			var state struct {
				Closes       []int
				Stopped      bool
				ReadyState   int
				Reconnecting int
			}
			time.Sleep(1500 * time.Millisecond) // past the longest retry delay
			tab.Eval(`({closes: T.closes, stopped: B.socket.stopped, readyState: B.socket.readyState, reconnecting: T.reconnecting, opens: T.opens})`, &state)
			if fmt.Sprint(state.Closes) != "[4001]" || !state.Stopped || state.ReadyState != 3 || state.Reconnecting != 0 {
				t.Errorf("after a close with 4001: %+v, want closed for good", state)
			}
			var opens int
			tab.Eval(`T.opens`, &opens)
			if opens != 1 {
				t.Errorf("after a close with 4001 the page opened %d sockets, want 1", opens)
			}

			// An absolute URL, and the site root when the URL is omitted.
			tab.Eval(`start("ws://`+srv.addr+`/echo/", `+fast+`)`, nil)
			tab.WaitTrue(`T.opens === 1`)
			tab.Eval(`B.send("absolute")`, nil)
			tab.WaitTrue(`T.calls.some((c) => c[1].echo === '"absolute"')`)
			tab.Eval(`B.close(), start(undefined, `+fast+`)`, nil)
			tab.WaitTrue(`T.opens === 1 && B.socket.url === "ws://` + srv.addr + `"`)

			// A refused handshake (403) is not retried.
			tab.Eval(`B.close(), start("/reject/", `+fast+`)`, nil)
			tab.WaitTrue(`T.errors.includes("EREJECTED")`)
			tab.Eval(`({opens: T.opens, stopped: B.socket.stopped})`, &state)
			tab.Eval(`T.opens`, &opens)
			if opens != 0 {
				t.Errorf("a refused handshake opened %d sockets", opens)
			}
			tab.Eval(`B.close()`, nil)
		}()
	}

	// The server process is killed and started again on the same port:
	// the page reconnects by itself, and the frames it sent meanwhile
	// arrive, in order, before the ones sent after.
	tab := b.Tab("restart")
	tab.Open(base+"/classic", "body")
	tab.WaitText("#ready", "ready")
	tab.Eval(`start("/echo/", `+fast+`)`, nil)
	tab.WaitTrue(`T.opens === 1`)
	tab.Eval(`B.send("before")`, nil)
	tab.WaitTrue(`T.calls.length === 1`)
	srv.kill()
	// Every failed attempt while the server is down fires "close" again
	// (after minReconnectionDelay, 200 ms here), so the wait must not ask
	// for exactly one close: a slow poll on a loaded machine misses that
	// window and then waits in vain.
	tab.WaitTrue(`T.closes.length >= 1 && T.reconnecting >= 1`)
	var firstClose int
	tab.Eval(`T.closes[0]`, &firstClose)
	if firstClose != 1006 {
		t.Errorf("the killed server's socket closed with %d, want 1006 (abnormal closure)", firstClose)
	}
	tab.Eval(`["q1", "q2", "q3"].forEach((q) => B.send(q)), B.socket.addEventListener("open", () => B.send("after"))`, nil)
	var queued int
	tab.Eval(`B.socket.queued`, &queued)
	if queued != 3 {
		t.Fatalf("%d frames queued while down, want 3", queued)
	}
	time.Sleep(time.Second) // a few failed attempts while the server is down
	srv.start()
	tab.WaitTrue(`T.opens === 2 && T.calls.length === 5`)
	var echoes []string
	tab.Eval(`T.calls.map((c) => c[1].echo)`, &echoes)
	if got := strings.Join(echoes, " "); got != `"before" "q1" "q2" "q3" "after"` {
		t.Errorf("echoes across the restart: %s, want \"before\" \"q1\" \"q2\" \"q3\" \"after\"", got)
	}
	var errs []string
	tab.Eval(`T.errors.filter((e) => e !== "error")`, &errs)
	if len(errs) != 0 {
		t.Errorf("library errors across the restart: %v", errs)
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
