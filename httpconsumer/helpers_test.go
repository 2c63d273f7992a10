package httpconsumer_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/gochannels/channels/internal/testenv"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/httpconsumer"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a log destination that tests read while consumers write.
type syncBuffer = testenv.Output

// testLogger writes to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newClient returns a test client whose router sends "http.request" to c.
func newClient(t *testing.T, c *httpconsumer.Consumer) *channelstest.Client {
	t.Helper()
	if c.Logger == nil {
		c.Logger = testLogger(t)
	}
	r := channels.NewRouter()
	r.Route("http.request", c)
	return channelstest.NewClient(t, r)
}

// get is a minimal "http.request" message, as an interface server sends it.
func get(path string) channels.Content {
	return channels.Content{
		"http_version": "1.1",
		"method":       "GET",
		"scheme":       "http",
		"path":         path,
		"query_string": []byte{},
		"headers":      []any{[]any{[]byte("host"), []byte("example.com")}},
		"client":       []any{"192.0.2.7", int64(51000)},
		"server":       []any{"10.0.0.2", int64(80)},
	}
}

// with returns a copy of c with the given keys set (a nil value deletes the
// key).
func with(c channels.Content, kv ...any) channels.Content {
	out := c.Clone()
	for i := 0; i < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(out, k)
			continue
		}
		out[k] = kv[i+1]
	}
	return out
}

// response is a complete response read from the reply channel.
type response struct {
	status  int64
	headers []string // "Name: value"
	body    string
	msgs    []channels.Content
}

func (r response) header(name string) []string {
	var out []string
	for _, h := range r.headers {
		if n, v, _ := cut(h); n == name {
			out = append(out, v)
		}
	}
	return out
}

func cut(h string) (string, string, bool) {
	for i := 0; i+1 < len(h); i++ {
		if h[i] == ':' && h[i+1] == ' ' {
			return h[:i], h[i+2:], true
		}
	}
	return h, "", false
}

// receiveResponse reads messages from the client's reply channel until one
// has more_content false, checking the shape of each.
func receiveResponse(t *testing.T, cl *channelstest.Client) response {
	t.Helper()
	var r response
	for {
		m := cl.Receive()
		r.msgs = append(r.msgs, m)
		if len(r.msgs) == 1 {
			status, ok := m["status"].(int64)
			if !ok {
				t.Fatalf("first response message has no int status: %v", m)
			}
			r.status = status
			hs, ok := m["headers"].([]any)
			if !ok {
				t.Fatalf("first response message has no header list: %v", m)
			}
			for _, h := range hs {
				pair, ok := h.([]any)
				if !ok || len(pair) != 2 {
					t.Fatalf("header %v is not a pair", h)
				}
				name, ok1 := pair[0].([]byte)
				value, ok2 := pair[1].([]byte)
				if !ok1 || !ok2 {
					t.Fatalf("header %v is not [bytes, bytes]", h)
				}
				r.headers = append(r.headers, fmt.Sprintf("%s: %s", name, value))
			}
		} else if _, ok := m["status"]; ok {
			t.Fatalf("message %d repeats the status: %v", len(r.msgs), m)
		}
		if v, ok := m["content"]; ok {
			b, ok := v.([]byte)
			if !ok {
				t.Fatalf("content is %T, want bytes", v)
			}
			r.body += string(b)
		}
		more, ok := m["more_content"].(bool)
		if !ok {
			t.Fatalf("message %d has no boolean more_content: %v", len(r.msgs), m)
		}
		if !more {
			return r
		}
	}
}

// serve sends msg, consumes it with c and returns the response.
func serve(t *testing.T, c *httpconsumer.Consumer, msg channels.Content) response {
	t.Helper()
	cl := newClient(t, c)
	cl.Send("http.request", msg)
	if err := cl.Consume("http.request"); err != nil {
		t.Fatalf("Consume: %v", err)
	}
	resp := receiveResponse(t, cl)
	cl.ReceiveNothing()
	return resp
}

// seen is what a handler saw of its request.
type seen struct {
	r          *http.Request
	body       string
	rootPath   string
	serverName string
	serverPort string
	scheme     string
	message    *channels.Message
	inConsumer bool
}

// capture runs a handler that records its request on msg and returns what
// it saw and the response.
func capture(t *testing.T, msg channels.Content) (seen, response) {
	t.Helper()
	var s seen
	var called bool
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		called = true
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(r.Body); err != nil {
			t.Errorf("read body: %v", err)
		}
		s = seen{
			r:          r,
			body:       buf.String(),
			rootPath:   httpconsumer.RootPath(r),
			serverName: httpconsumer.ServerName(r),
			serverPort: httpconsumer.ServerPort(r),
			scheme:     httpconsumer.Scheme(r),
			message:    httpconsumer.Message(r),
			inConsumer: channels.InConsumer(r.Context()),
		}
	}))
	resp := serve(t, c, msg)
	if !called {
		t.Fatalf("handler not called; response %d %q", resp.status, resp.body)
	}
	return s, resp
}

// newClientOnRouter returns a test client running router.
func newClientOnRouter(t *testing.T, router *channels.Router) *channelstest.Client {
	t.Helper()
	return channelstest.NewClient(t, router)
}
