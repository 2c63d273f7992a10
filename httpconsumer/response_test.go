package httpconsumer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/httpconsumer"
	"github.com/gochannels/channels/inmemory"
	"github.com/google/go-cmp/cmp"
)

// msgShape describes one response message: its content length and flag.
type msgShape struct {
	Status  bool // carries status and headers
	Content int  // -1: no content key
	More    bool
}

func shapes(msgs []channels.Content) []msgShape {
	var out []msgShape
	for _, m := range msgs {
		s := msgShape{Content: -1, More: m.Bool("more_content")}
		_, s.Status = m["status"]
		if b, ok := m["content"].([]byte); ok {
			s.Content = len(b)
		}
		out = append(out, s)
	}
	return out
}

// §6.4 non-streaming: the body is split into ChunkSize pieces, more_content
// true on all but the last; an empty body is one message.
func TestBodyChunks(t *testing.T) {
	tests := []struct {
		name  string
		body  string
		write []int // sizes of the Write calls; nil means one call
		want  []msgShape
	}{
		{"46 bytes with chunk size 30", strings.Repeat("x", 46), nil, []msgShape{{true, 30, true}, {false, 16, false}}},
		{"46 bytes in small writes", strings.Repeat("x", 46), []int{7, 7, 7, 7, 7, 7, 4}, []msgShape{{true, 30, true}, {false, 16, false}}},
		{"exactly one chunk", strings.Repeat("x", 30), nil, []msgShape{{true, 30, false}}},
		{"exactly two chunks", strings.Repeat("x", 60), nil, []msgShape{{true, 30, true}, {false, 30, false}}},
		{"small body", "hello", nil, []msgShape{{true, 5, false}}},
		{"empty body", "", nil, []msgShape{{true, 0, false}}},
		{"91 bytes", strings.Repeat("y", 91), nil, []msgShape{{true, 30, true}, {false, 30, true}, {false, 30, true}, {false, 1, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.write == nil {
					io.WriteString(w, tt.body)
					return
				}
				rest := tt.body
				for _, n := range tt.write {
					io.WriteString(w, rest[:n])
					rest = rest[n:]
				}
			}))
			c.ChunkSize = 30
			resp := serve(t, c, get("/"))
			if diff := cmp.Diff(tt.want, shapes(resp.msgs)); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			if resp.body != tt.body || resp.status != 200 {
				t.Errorf("got %d %q", resp.status, resp.body)
			}
		})
	}
}

// A handler that writes nothing gives 200 with an empty body, as in
// net/http.
func TestNothingWritten(t *testing.T) {
	resp := serve(t, httpconsumer.New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})), get("/"))
	if resp.status != 200 || resp.body != "" {
		t.Errorf("got %d %q", resp.status, resp.body)
	}
	if diff := cmp.Diff([]string{"Content-Length: 0"}, resp.headers); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]msgShape{{true, 0, false}}, shapes(resp.msgs)); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

// §6.4 headers: names as written, stable order, one Set-Cookie pair per
// cookie after the others, values Latin-1, Content-Type sniffed and
// Content-Length added as net/http does.
func TestResponseHeaders(t *testing.T) {
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Frame-Options", "DENY")
		h.Add("Vary", "Cookie")
		h.Add("Vary", "Accept-Encoding")
		h["x-raw-case"] = []string{"kept"}
		h.Set("Content-Disposition", `attachment; filename="café.txt"`)
		h.Set("X-Not-Latin1", "日本")
		h.Set("X-Injected", "a\r\nSet-Cookie: evil=1")
		h["Bad Name"] = []string{"dropped"}
		h.Set("Trailer", "X-Checksum")
		h.Set(http.TrailerPrefix+"X-Checksum", "dropped")
		http.SetCookie(w, &http.Cookie{Name: "sessionid", Value: "abc", Path: "/", HttpOnly: true})
		http.SetCookie(w, &http.Cookie{Name: "csrftoken", Value: "xyz"})
		w.WriteHeader(201)
		h.Set("X-After-WriteHeader", "ignored")
		io.WriteString(w, "<!DOCTYPE html><p>created</p>")
	}))
	resp := serve(t, c, get("/"))
	want := []string{
		"Content-Disposition: attachment; filename=\"caf\xe9.txt\"",
		"Content-Length: 29",
		"Content-Type: text/html; charset=utf-8",
		"Vary: Cookie",
		"Vary: Accept-Encoding",
		"X-Frame-Options: DENY",
		"X-Injected: a  Set-Cookie: evil=1",
		"X-Not-Latin1: 日本",
		"x-raw-case: kept",
		"Set-Cookie: sessionid=abc; Path=/; HttpOnly",
		"Set-Cookie: csrftoken=xyz",
	}
	if diff := cmp.Diff(want, resp.headers); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if resp.status != 201 {
		t.Errorf("status %d", resp.status)
	}
}

// A handler's own Content-Type (even an empty one) is not replaced, and a
// written Content-Length is kept and enforced.
func TestContentTypeAndLengthFromHandler(t *testing.T) {
	var writeErr error
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = nil
		w.Header().Set("Content-Length", "3")
		io.WriteString(w, "abc")
		_, writeErr = io.WriteString(w, "d")
	}))
	resp := serve(t, c, get("/"))
	if diff := cmp.Diff([]string{"Content-Length: 3"}, resp.headers); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	if resp.body != "abc" || !errors.Is(writeErr, http.ErrContentLength) {
		t.Errorf("body %q, write over Content-Length = %v", resp.body, writeErr)
	}
}

// Statuses without a body refuse writes; HEAD responses carry the headers
// of the body they would have had, and no body.
func TestBodylessResponses(t *testing.T) {
	t.Run("204", func(t *testing.T) {
		var writeErr error
		resp := serve(t, httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(204)
			_, writeErr = io.WriteString(w, "x")
		})), get("/"))
		if resp.status != 204 || resp.body != "" || len(resp.headers) != 0 || !errors.Is(writeErr, http.ErrBodyNotAllowed) {
			t.Errorf("got %d %v %q, write error %v", resp.status, resp.headers, resp.body, writeErr)
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		resp := serve(t, httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.Repeat("plain text ", 10))
		})), with(get("/"), "method", "HEAD"))
		want := []string{"Content-Length: 110", "Content-Type: text/plain; charset=utf-8"}
		if diff := cmp.Diff(want, resp.headers); diff != "" {
			t.Errorf("headers (-want +got):\n%s", diff)
		}
		if resp.status != 200 || resp.body != "" || len(resp.msgs) != 1 {
			t.Errorf("got %d %q in %d messages", resp.status, resp.body, len(resp.msgs))
		}
	})
	t.Run("informational status is not relayed", func(t *testing.T) {
		resp := serve(t, httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusEarlyHints)
			w.WriteHeader(http.StatusAccepted)
		})), get("/"))
		if resp.status != 202 {
			t.Errorf("status %d, want 202", resp.status)
		}
	})
}

// flushingHandler writes each part and flushes it.
func flushingHandler(parts []string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for _, p := range parts {
			io.WriteString(w, p)
			if err := http.NewResponseController(w).Flush(); err != nil {
				panic(err)
			}
		}
	})
}

// §6.4 streaming: every flushed part is a more_content message (the first
// with status and headers), then a final message without content.
func TestStreaming(t *testing.T) {
	ten := make([]string, 10)
	for i := range ten {
		ten[i] = fmt.Sprintf("data: %02d\n\n", i)
	}
	tests := []struct {
		name  string
		parts []string
		want  []msgShape
	}{
		{"ten parts", ten, append([]msgShape{{true, 10, true}},
			msgShape{false, 10, true}, msgShape{false, 10, true}, msgShape{false, 10, true},
			msgShape{false, 10, true}, msgShape{false, 10, true}, msgShape{false, 10, true},
			msgShape{false, 10, true}, msgShape{false, 10, true}, msgShape{false, 10, true},
			msgShape{false, -1, false})},
		{"zero parts", nil, []msgShape{{true, 0, false}}},
		{"a part over the chunk size is split", []string{strings.Repeat("z", 70)}, []msgShape{
			{true, 30, true}, {false, 30, true}, {false, 10, true}, {false, -1, false},
		}},
		{"flush with nothing written sends the headers", []string{""}, []msgShape{{true, 0, true}, {false, -1, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := httpconsumer.New(flushingHandler(tt.parts))
			c.ChunkSize = 30
			resp := serve(t, c, get("/events/"))
			if diff := cmp.Diff(tt.want, shapes(resp.msgs)); diff != "" {
				t.Errorf("messages (-want +got):\n%s", diff)
			}
			if want := strings.Join(tt.parts, ""); resp.body != want {
				t.Errorf("body %q, want %q", resp.body, want)
			}
			if len(resp.msgs) > 1 && resp.header("Content-Length") != nil {
				t.Errorf("a streamed response has Content-Length %v", resp.header("Content-Length"))
			}
		})
	}
}

// What is written after the last Flush goes out before the final message.
func TestStreamingTail(t *testing.T) {
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "head")
		w.(http.Flusher).Flush()
		io.WriteString(w, "tail")
	}))
	resp := serve(t, c, get("/"))
	if diff := cmp.Diff([]msgShape{{true, 4, true}, {false, 4, true}, {false, -1, false}}, shapes(resp.msgs)); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
	if resp.body != "headtail" {
		t.Errorf("body %q", resp.body)
	}
}

// Checklist B.32: a flushed part reaches the layer while the handler is
// still running inside a consumer run by a Runner (as in a worker), so
// consumer atomicity does not hold streaming responses back.
func TestStreamingIsNotHeldByTheOutbox(t *testing.T) {
	received := make(chan struct{})
	release := sync.OnceFunc(func() { close(received) })
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		w.(http.Flusher).Flush()
		select {
		case <-received:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second")
	}))
	cl := newClient(t, c)
	cl.Send("http.request", get("/stream/"))
	m := cl.WaitMessage("http.request")
	var runErr error
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(done)
		runErr = cl.Runner.Run(ctx, cl.Consumer, m)
	}()
	t.Cleanup(func() {
		cancel()
		release()
		<-done
	})

	first := cl.Receive() // fails the test if the part is held until the handler returns
	if string(first.Bytes("content")) != "first" || !first.Bool("more_content") || !first.Has("status") {
		t.Fatalf("first message %v", first)
	}
	release()
	<-done
	if runErr != nil {
		t.Fatalf("Run: %v", runErr)
	}
	second, last := cl.Receive(), cl.Receive()
	if string(second.Bytes("content")) != "second" || !second.Bool("more_content") {
		t.Errorf("second message %v", second)
	}
	if last.Has("content") || last.Bool("more_content") {
		t.Errorf("last message %v", last)
	}
}

// The consumer's own sends on r.Context() keep consumer atomicity: they go
// out after the response, when the consumer returns.
func TestHandlerSendsAreHeld(t *testing.T) {
	var cl *channelstest.Client
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := channels.Channel{Name: "audit"}.Send(r.Context(), channels.Content{"path": r.URL.Path})
		if err != nil {
			t.Errorf("Send: %v", err)
		}
		if m := cl.GetNextMessage("audit"); m != nil {
			t.Errorf("audit message sent before the consumer returned")
		}
	}))
	cl = newClient(t, c)
	cl.Send("http.request", get("/x"))
	if err := cl.Consume("http.request"); err != nil {
		t.Fatal(err)
	}
	receiveResponse(t, cl)
	if m := cl.WaitMessage("audit"); m.Content.String("path") != "/x" {
		t.Errorf("audit message %v", m.Content)
	}
}

// §6.3: a panic gives 500 text/plain "Internal Server Error" (the panic
// value and stack with Debug) and is logged; http.ErrAbortHandler is not
// logged.
func TestPanic(t *testing.T) {
	tests := []struct {
		name     string
		value    any
		debug    bool
		wantBody string
		wantLog  bool
	}{
		{"panic", "boom", false, "Internal Server Error", true},
		{"panic with debug", "boom", true, "Internal Server Error\n\npanic: boom\n\ngoroutine ", true},
		{"ErrAbortHandler", http.ErrAbortHandler, false, "Internal Server Error", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs syncBuffer
			c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Partial", "lost")
				io.WriteString(w, "partial")
				panic(tt.value)
			}))
			c.Debug = tt.debug
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			resp := serve(t, c, get("/"))
			if resp.status != 500 || !strings.HasPrefix(resp.body, tt.wantBody) {
				t.Errorf("got %d %q, want 500 %q", resp.status, resp.body, tt.wantBody)
			}
			if !tt.debug && strings.Contains(resp.body, "boom") {
				t.Errorf("the body shows the panic without Debug")
			}
			if diff := cmp.Diff([]string{"Content-Type: text/plain; charset=utf-8"}, resp.headers); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if logged := strings.Contains(logs.String(), "handler panicked"); logged != tt.wantLog {
				t.Errorf("logged = %v, want %v; log:\n%s", logged, tt.wantLog, logs.String())
			}
			if tt.wantLog && !strings.Contains(logs.String(), "boom") {
				t.Errorf("the log does not name the panic:\n%s", logs.String())
			}
		})
	}
}

// A panic after the response started ends it with the final message.
func TestPanicWhileStreaming(t *testing.T) {
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		io.WriteString(w, "lost")
		panic("boom")
	}))
	resp := serve(t, c, get("/"))
	if diff := cmp.Diff([]msgShape{{true, 4, true}, {false, -1, false}}, shapes(resp.msgs)); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}

// §6.3 ResponseLater: nothing is sent; another consumer answers on the reply
// channel kept from the message.
func TestResponseLater(t *testing.T) {
	tests := []struct {
		name  string
		later func(w http.ResponseWriter, r *http.Request)
	}{
		{"RespondLater", func(w http.ResponseWriter, r *http.Request) {
			if !httpconsumer.RespondLater(r) {
				t.Errorf("RespondLater = false")
			}
			if _, err := io.WriteString(w, "discarded"); !errors.Is(err, httpconsumer.ErrResponseLater) {
				t.Errorf("write after RespondLater = %v", err)
			}
		}},
		{"panic ErrResponseLater", func(w http.ResponseWriter, r *http.Request) {
			panic(httpconsumer.ErrResponseLater)
		}},
		{"panic wrapping ErrResponseLater", func(w http.ResponseWriter, r *http.Request) {
			panic(fmt.Errorf("waiting for job: %w", httpconsumer.ErrResponseLater))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var waiting []string
			c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Discarded", "yes")
				io.WriteString(w, "discarded")
				waiting = append(waiting, httpconsumer.Message(r).ReplyChannel)
				tt.later(w, r)
			}))
			cl := newClient(t, c)
			cl.Send("http.request", get("/poll/"))
			if err := cl.Consume("http.request"); err != nil {
				t.Fatalf("Consume: %v", err)
			}
			cl.ReceiveNothing()
			// The long-poll answer, from elsewhere.
			ch := channels.Channel{Name: waiting[0], Layer: cl.Layer}
			if err := ch.Send(context.Background(), channels.Content{"status": 200, "content": []byte("event")}); err != nil {
				t.Fatal(err)
			}
			if got := cl.Receive(); string(got.Bytes("content")) != "event" {
				t.Errorf("reply %v", got)
			}
		})
	}
}

// RespondLater after the response started changes nothing; outside a
// consumer it reports false.
func TestRespondLaterTooLate(t *testing.T) {
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		if httpconsumer.RespondLater(r) {
			t.Errorf("RespondLater = true after the response started")
		}
	}))
	resp := serve(t, c, get("/"))
	if resp.body != "part" {
		t.Errorf("body %q", resp.body)
	}
	if httpconsumer.RespondLater(&http.Request{}) || httpconsumer.Message(&http.Request{}) != nil {
		t.Errorf("RespondLater or Message work on a request not made by a Consumer")
	}
}

// §6.4: on ChannelFull the response message is retried until the reply
// channel has room; nothing is lost or reordered.
func TestReplyChannelFullIsRetried(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "test.reply!*", Capacity: 1}}})
	t.Cleanup(func() { l.Close() })
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "aaaabbbbcccc")
	}))
	c.ChunkSize = 4
	c.Logger = testLogger(t)
	router := channels.NewRouter()
	router.Route("http.request", c)
	cl := channelstest.NewClientOn(t, l, router)
	cl.Send("http.request", get("/"))
	m := cl.WaitMessage("http.request")
	done := make(chan error, 1)
	go func() { done <- cl.Runner.Run(context.Background(), router, m) }()

	// Drain only once the consumer has found the channel full.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		st, _ := l.Stats(context.Background())
		if st.Full > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the reply channel never filled up")
		}
	}
	resp := receiveResponse(t, cl)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if resp.body != "aaaabbbbcccc" || len(resp.msgs) != 3 {
		t.Errorf("body %q in %d messages", resp.body, len(resp.msgs))
	}
}

// A reply channel that stays full for SendTimeout abandons the response:
// the handler's write fails and Consume reports ErrChannelFull.
func TestReplyChannelFullGivesUp(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{ChannelCapacity: []channels.CapacityRule{{Pattern: "test.reply!*", Capacity: 1}}})
	t.Cleanup(func() { l.Close() })
	var writeErr error
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, writeErr = io.WriteString(w, "aaaabbbbcccc")
	}))
	c.ChunkSize = 4
	c.SendTimeout = 120 * time.Millisecond
	c.Logger = testLogger(t)
	router := channels.NewRouter()
	router.Route("http.request", c)
	cl := channelstest.NewClientOn(t, l, router)
	cl.Send("http.request", get("/"))
	err := cl.Consume("http.request")
	if !errors.Is(err, channels.ErrChannelFull) || !errors.Is(writeErr, channels.ErrChannelFull) {
		t.Errorf("Consume = %v, handler's write = %v; want ErrChannelFull", err, writeErr)
	}
	if got := cl.Receive(); string(got.Bytes("content")) != "aaaa" {
		t.Errorf("first message %v", got)
	}
	cl.ReceiveNothing()
}

// Hijacking and server push are not supported; deadlines neither.
func TestUnsupportedFeatures(t *testing.T) {
	resp := serve(t, httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if _, _, err := rc.Hijack(); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("Hijack = %v, want ErrNotSupported", err)
		}
		if err := rc.SetWriteDeadline(time.Now()); !errors.Is(err, http.ErrNotSupported) {
			t.Errorf("SetWriteDeadline = %v, want ErrNotSupported", err)
		}
		if _, ok := w.(http.Pusher); ok {
			t.Errorf("the ResponseWriter is an http.Pusher")
		}
		if _, ok := w.(http.Hijacker); ok {
			t.Errorf("the ResponseWriter is an http.Hijacker")
		}
		io.WriteString(w, "ok")
	})), get("/"))
	if resp.body != "ok" {
		t.Errorf("body %q", resp.body)
	}
}

// Writes from a goroutine that outlives the handler fail; nothing more is
// sent.
func TestWriteAfterReturn(t *testing.T) {
	var w http.ResponseWriter
	c := httpconsumer.New(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		w = rw
		io.WriteString(rw, "done")
	}))
	cl := newClient(t, c)
	cl.Send("http.request", get("/"))
	if err := cl.Consume("http.request"); err != nil {
		t.Fatal(err)
	}
	receiveResponse(t, cl)
	if _, err := io.WriteString(w, "late"); err == nil {
		t.Errorf("write after return succeeded")
	}
	if err := http.NewResponseController(w).Flush(); err == nil {
		t.Errorf("flush after return succeeded")
	}
	cl.ReceiveNothing()
}

// Consume runs concurrently on one Consumer.
func TestConcurrentConsume(t *testing.T) {
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	c.Logger = testLogger(t)
	l := inmemory.MustNew(inmemory.Config{})
	t.Cleanup(func() { l.Close() })
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			reply, err := l.NewChannel(ctx, "http.response.test!")
			if err != nil {
				t.Error(err)
				return
			}
			path := fmt.Sprintf("/%d", i)
			m := channels.NewMessage(l, "http.request", with(get(path), "reply_channel", reply))
			if err := c.Consume(ctx, m); err != nil {
				t.Error(err)
				return
			}
			rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, got, err := l.Receive(rctx, reply)
			if err != nil || string(got.Bytes("content")) != path {
				t.Errorf("reply %v, %v; want %s", got, err, path)
			}
		})
	}
	wg.Wait()
}

// Switching a limit off logs a warning.
func TestUnsafeSettingsWarn(t *testing.T) {
	var logs syncBuffer
	c := httpconsumer.New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	c.MaxBodySize, c.BodyTimeout, c.SendTimeout = -1, -1, -1
	c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	serve(t, c, get("/"))
	for _, want := range []string{"MaxBodySize is negative", "BodyTimeout is negative", "SendTimeout is negative"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning %q in:\n%s", want, logs.String())
		}
	}
}

// Name and Channels describe the consumer to routers and logs.
func TestNameAndChannels(t *testing.T) {
	c := httpconsumer.New(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	if got := channels.ConsumerName(c); !strings.HasPrefix(got, "httpconsumer(httpconsumer_test.") {
		t.Errorf("ConsumerName = %q", got)
	}
	if got := channels.ConsumerName(httpconsumer.New(http.NewServeMux())); got != "httpconsumer(*http.ServeMux)" {
		t.Errorf("ConsumerName = %q", got)
	}
	r := channels.NewRouter()
	r.Handle(c)
	if diff := cmp.Diff([]string{"http.request"}, r.Channels()); diff != "" {
		t.Errorf("Channels (-want +got):\n%s", diff)
	}
}

// WriteHeader misuse behaves as in net/http: an invalid code panics (so the
// client gets a 500), a second call is logged and ignored.
func TestWriteHeaderMisuse(t *testing.T) {
	resp := serve(t, httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(42)
	})), get("/"))
	if resp.status != 500 {
		t.Errorf("invalid code: status %d, want 500", resp.status)
	}

	var logs syncBuffer
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		w.WriteHeader(http.StatusOK)
	}))
	c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	if resp := serve(t, c, get("/")); resp.status != http.StatusTeapot {
		t.Errorf("status %d, want 418", resp.status)
	}
	if !strings.Contains(logs.String(), "superfluous WriteHeader") {
		t.Errorf("no warning in:\n%s", logs.String())
	}
}

// Headers too large for the layer give the client a 500 instead of
// silence, and Consume reports the error.
func TestHeadersTooLarge(t *testing.T) {
	l := inmemory.MustNew(inmemory.Config{MaxMessageSize: 4096})
	t.Cleanup(func() { l.Close() })
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Huge", strings.Repeat("h", 8192))
		io.WriteString(w, "body")
	}))
	c.Logger = testLogger(t)
	router := channels.NewRouter()
	router.Route("http.request", c)
	cl := channelstest.NewClientOn(t, l, router)
	cl.Send("http.request", get("/"))
	if err := cl.Consume("http.request"); !errors.Is(err, channels.ErrMessageTooLarge) {
		t.Errorf("Consume = %v, want ErrMessageTooLarge", err)
	}
	if resp := receiveResponse(t, cl); resp.status != 500 {
		t.Errorf("status %d, want 500", resp.status)
	}
	cl.ReceiveNothing()
}

// Panicking with ErrResponseLater after the response started ends the
// response instead.
func TestResponseLaterPanicTooLate(t *testing.T) {
	c := httpconsumer.New(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		panic(httpconsumer.ErrResponseLater)
	}))
	resp := serve(t, c, get("/"))
	if diff := cmp.Diff([]msgShape{{true, 4, true}, {false, -1, false}}, shapes(resp.msgs)); diff != "" {
		t.Errorf("messages (-want +got):\n%s", diff)
	}
}
