// Package httpconsumer runs ordinary net/http handlers inside a worker: it is
// a channels.Consumer for "http.request" messages, the Go counterpart of
// Django views running in Channels workers.
//
//	r := channels.NewRouter()
//	r.Route("http.request", httpconsumer.New(mux))
//
// For every message the consumer builds an *http.Request, reads the whole
// body (the inline "body" plus any chunks on "body_channel"), runs the
// handler, and sends what it wrote to the message's reply channel as a
// Response message followed by Response Chunks. The handler sees what an
// ordinary net/http handler sees, with these differences, each documented
// on the function or field concerned:
//
//   - r.URL.Path is the path with the mount point ("root_path") removed:
//     what http.StripPrefix passes on and WSGI calls PATH_INFO, so that a
//     handler written for "/" works unchanged wherever it is mounted.
//     r.RequestURI keeps the full path, routing filters (channels.Path)
//     match the message's full path, and [RootPath] gives the mount point
//     for building links.
//   - The whole body has been read before the handler runs; r.ContentLength
//     is its length. An upload the client abandoned gets no response at
//     all, a slow one a 408, a large one a 413, and the handler does not
//     run for any of them.
//   - Header values are the request's bytes decoded as Latin-1; see
//     [Consumer.Consume].
//   - r.TLS is non-nil, but empty, when the interface server says the
//     scheme was https; see [Scheme].
//   - Response headers go out as net/http would write them: Content-Type
//     sniffed when the handler set none, Content-Length added to a
//     response that is complete in one message, values encoded as Latin-1
//     when every character fits. The interface server adds Date.
//   - A panic gives a 500 (see [Consumer.Consume]), not a dropped
//     connection.
//   - Hijacking and HTTP/2 server push are not supported: the
//     ResponseWriter implements neither http.Hijacker nor http.Pusher, so
//     http.ResponseController.Hijack returns an error wrapping
//     http.ErrNotSupported.
//
// # Responses
//
// Response messages are sent at once with channels.Immediately, never held
// in the consumer's outbox (consumer atomicity would otherwise keep a
// streaming response in memory until the handler returns). What the handler
// sends itself with r.Context() (channels.Channel.Send, Group.Send) is still
// held until the consumer returns.
//
// A response the handler never flushes is sent when the handler returns, as
// one message when it fits in ChunkSize and otherwise as ChunkSize pieces
// with "more_content" true on all but the last; only ChunkSize bytes are
// ever buffered, so a large body starts going out while the handler is
// still writing it. After the handler calls Flush (through http.Flusher or
// http.ResponseController) the response is streaming: what was written
// goes out at once in messages with "more_content" true, the first also
// carrying the status and headers, and the response ends with a message
// {"more_content": false} that has no content.
//
// # Answering later
//
// A handler that leaves the answer to another consumer (the long-poll
// pattern: keep the reply channel from [Message], answer it when an event
// arrives) calls [RespondLater], or panics with [ErrResponseLater]; nothing
// is sent for the request.
//
// # Static files
//
// There is no separate static-files consumer: an http.FileServer inside the
// adapter serves files, with the headers, ranges and conditional requests
// net/http implements:
//
//	static := httpconsumer.New(http.StripPrefix("/static/", http.FileServerFS(assets)))
//	r.Route("http.request", static, channels.Path(`^/static/`))
package httpconsumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/owned"
)

// Defaults for the Consumer's zero fields.
const (
	// DefaultChunkSize is the largest body piece sent in one message (as
	// the Channels framework's chunk_size): 512 KiB.
	DefaultChunkSize = 512 << 10
	// DefaultBodyTimeout is the longest the consumer waits, in total, for
	// the chunks of a request body: 60 s.
	DefaultBodyTimeout = 60 * time.Second
	// DefaultMaxBodySize is the largest request body read: 10 MiB, the
	// limit net/http's ParseForm applies to form bodies.
	DefaultMaxBodySize = 10 << 20
	// DefaultSendTimeout is the longest one response message waits for room
	// on a full reply channel: 120 s, the interface server's HTTP timeout.
	DefaultSendTimeout = 120 * time.Second
)

// RetryInterval is the pause between attempts to send a response message to
// a full reply channel (50 ms, as in the Channels framework).
const RetryInterval = 50 * time.Millisecond

// ErrResponseLater, used as a panic value by a handler, says that another
// consumer will answer on the request's reply channel: nothing is sent for
// this request. Like http.ErrAbortHandler it goes through middleware that
// does not recover panics; [RespondLater] is the way that needs no panic.
var ErrResponseLater = errors.New("httpconsumer: response will be sent later by another consumer")

// Consumer runs an http.Handler for "http.request" messages. Set Handler;
// the other fields' zero values are safe defaults.
//
// A Consumer is safe for concurrent use by many worker goroutines once its
// fields are set; it must not be copied after first use.
type Consumer struct {
	// Handler serves the requests. It is required.
	Handler http.Handler

	// ChunkSize is the largest body piece sent in one message. Zero means
	// DefaultChunkSize. Each message must fit the layer's size limit
	// (1 MB measured as JSON, where bytes count as base64), so pieces
	// above about 700 KiB are refused by the layer.
	ChunkSize int

	// BodyTimeout bounds the total wait for the chunks of a request body
	// on its body channel; when it passes, the client gets 408 "408
	// Request Timeout (upload too slow)". Zero means DefaultBodyTimeout;
	// a negative value waits as long as the consumer's context allows and
	// logs a warning.
	BodyTimeout time.Duration

	// MaxBodySize is the largest request body read, inline body and
	// chunks together; a larger one gets 413 and the handler does not
	// run. Zero means DefaultMaxBodySize; a negative value removes the
	// limit and logs a warning.
	MaxBodySize int64

	// SendTimeout bounds how long one response message is retried, every
	// RetryInterval, while the reply channel is full (the Channels
	// framework retried forever). When it passes the response is
	// abandoned: the handler's writes fail and Consume returns an error
	// wrapping channels.ErrChannelFull. Zero means DefaultSendTimeout; a
	// negative value retries until the consumer's context is done and
	// logs a warning.
	SendTimeout time.Duration

	// Debug puts the panic value and stack in the body of the 500 response
	// a handler panic produces. Off, the body is "Internal Server Error".
	Debug bool

	// Logger receives handler panics, undecodable requests and failed
	// uploads. Nil means slog.Default().
	Logger *slog.Logger

	warnOnce sync.Once
}

// New returns a consumer that runs h, with the default settings.
func New(h http.Handler) *Consumer { return &Consumer{Handler: h} }

// Channels reports "http.request", so that a router's Handle routes that
// channel to the consumer.
func (c *Consumer) Channels() []string { return []string{"http.request"} }

// Name names the consumer in logs after its handler, such as
// "httpconsumer(main.index)".
func (c *Consumer) Name() string { return "httpconsumer(" + handlerName(c.Handler) + ")" }

func handlerName(h http.Handler) string {
	if f, ok := h.(http.HandlerFunc); ok {
		if fn := runtime.FuncForPC(reflect.ValueOf(f).Pointer()); fn != nil {
			name := fn.Name()
			if i := strings.LastIndexByte(name, '/'); i >= 0 {
				name = name[i+1:]
			}
			return name
		}
	}
	return fmt.Sprintf("%T", h)
}

func (c *Consumer) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

func (c *Consumer) chunkSize() int {
	if c.ChunkSize > 0 {
		return c.ChunkSize
	}
	return DefaultChunkSize
}

func (c *Consumer) bodyTimeout() time.Duration {
	if c.BodyTimeout == 0 {
		return DefaultBodyTimeout
	}
	return c.BodyTimeout
}

func (c *Consumer) maxBodySize() int64 {
	if c.MaxBodySize == 0 {
		return DefaultMaxBodySize
	}
	return c.MaxBodySize
}

func (c *Consumer) sendTimeout() time.Duration {
	if c.SendTimeout == 0 {
		return DefaultSendTimeout
	}
	return c.SendTimeout
}

// warnUnsafe logs, once per consumer, every limit that has been switched
// off.
func (c *Consumer) warnUnsafe() {
	c.warnOnce.Do(func() {
		if c.BodyTimeout < 0 {
			c.logger().Warn("httpconsumer: BodyTimeout is negative: request bodies are awaited without a time limit")
		}
		if c.MaxBodySize < 0 {
			c.logger().Warn("httpconsumer: MaxBodySize is negative: request bodies are read without a size limit")
		}
		if c.SendTimeout < 0 {
			c.logger().Warn("httpconsumer: SendTimeout is negative: responses to a full reply channel are retried without a time limit")
		}
	})
}

// Consume serves one "http.request" message: it builds the request (see the
// package documentation), runs the handler and sends the response. It
// blocks until the handler has returned and the last response message has
// been sent; the request's context is derived from ctx and is cancelled when
// the handler returns, as in net/http.
//
// The request is built from the message as follows. Method is "method"
// upper-cased. r.URL.Path is "path" with "root_path" removed when the path
// starts with it ("/" when nothing is left), r.URL.RawQuery is
// "query_string" unchanged and r.RequestURI the full path, escaped, with the
// query. Proto comes from "http_version" ("1.1" when absent; "2" is
// HTTP/2.0). Header holds every pair of "headers" under its canonical name
// (repeated headers are kept as several values), with values decoded as
// Latin-1 (bytes 0x80–0xFF become the runes U+0080–U+00FF, so values are
// always valid UTF-8); a legacy map of name to value is accepted too. Host
// is the Host header (removed from Header, as net/http does) or, without
// one, the server address. RemoteAddr is "host:port" from "client", or ""
// when the message has none. TLS is set when "scheme" is "https". The
// routing filters' captured values are set with SetPathValue, so
// r.PathValue("room") works as under http.ServeMux.
//
// A message that cannot be decoded (a path that is not text, headers of
// the wrong shape, invalid header names or values, ...) gets a 400 response
// and the handler does not run. A handler panic gets a 500 (see
// Consumer.Debug), or ends the response if it had started, and is logged
// with its stack; http.ErrAbortHandler does the same without the log.
//
// Consume returns an error only when the response could not be delivered
// (the reply channel stayed full for SendTimeout, the layer failed, ctx
// ended), when the message has no reply channel or layer, or when Handler
// is nil; what the handler does, panics included, is the handler's
// business and gives nil. It is safe to call concurrently.
func (c *Consumer) Consume(ctx context.Context, m *channels.Message) error {
	if c.Handler == nil {
		return errors.New("httpconsumer: Consumer.Handler is nil")
	}
	if m.ReplyChannel == "" {
		return fmt.Errorf("httpconsumer: message on %q: %w", m.Channel, channels.ErrNoReplyChannel)
	}
	if m.Layer == nil {
		return fmt.Errorf("httpconsumer: message on %q: %w", m.Channel, channels.ErrNoLayer)
	}
	c.warnUnsafe()

	d, err := decode(m.Content)
	if err != nil {
		c.logger().Warn("httpconsumer: bad request", "channel", m.Channel, "reply_channel", m.ReplyChannel, "error", err)
		return c.sendPlain(ctx, m, http.StatusBadRequest, "400 Bad Request\n")
	}
	body, err := c.readBody(ctx, m.Layer, d.body, d.bodyChannel)
	if err != nil {
		return c.bodyFailed(ctx, m, d.path, err)
	}
	d.body = body

	w := &responseWriter{
		c:      c,
		ctx:    ctx,
		m:      m,
		head:   d.method == http.MethodHead,
		header: make(http.Header),
	}
	info := &w.info
	*info = requestInfo{
		msg:        m,
		w:          w,
		rootPath:   d.rootPath,
		scheme:     d.scheme,
		serverName: d.serverName,
		serverPort: d.serverPort,
	}
	hctx, cancel := context.WithCancel(context.WithValue(ctx, infoKey{}, info))
	defer cancel()
	if d.localAddr != nil {
		hctx = context.WithValue(hctx, http.LocalAddrContextKey, d.localAddr)
	}
	r := d.request(hctx)
	for k, v := range m.PathValues() {
		r.SetPathValue(k, v)
	}

	if v, panicked := serve(c.Handler, w, r); panicked {
		c.recovered(w, r, v)
	} else {
		w.finish()
	}
	cancel()
	return w.error()
}

// bodyFailed answers a request whose body could not be read: nothing for
// an aborted upload, 408, 413 or 400 for the others; errors from the layer
// or ctx are returned without an answer.
func (c *Consumer) bodyFailed(ctx context.Context, m *channels.Message, path string, err error) error {
	log := c.logger().With("path", path, "reply_channel", m.ReplyChannel)
	switch {
	case errors.Is(err, errAborted):
		log.Debug("httpconsumer: client closed the request while sending its body; no response")
		return nil
	case errors.Is(err, errBodyTimeout):
		log.Warn("httpconsumer: request body arrived too slowly", "timeout", c.bodyTimeout())
		return c.sendPlain(ctx, m, http.StatusRequestTimeout, "408 Request Timeout (upload too slow)")
	case errors.Is(err, errTooLarge):
		log.Warn("httpconsumer: request body too large", "limit", c.maxBodySize())
		return c.sendPlain(ctx, m, http.StatusRequestEntityTooLarge, "413 Request Entity Too Large\n")
	case errors.Is(err, errBadChunk):
		log.Warn("httpconsumer: bad request body chunk", "error", err)
		return c.sendPlain(ctx, m, http.StatusBadRequest, "400 Bad Request\n")
	}
	return err
}

// serve runs the handler and reports a recovered panic.
func serve(h http.Handler, w http.ResponseWriter, r *http.Request) (v any, panicked bool) {
	panicked = true
	defer func() {
		if panicked {
			v = recover()
		}
	}()
	h.ServeHTTP(w, r)
	return nil, false
}

// recovered ends the response of a handler that panicked with v.
func (c *Consumer) recovered(w *responseWriter, r *http.Request, v any) {
	log := c.logger()
	if err, ok := v.(error); ok && errors.Is(err, ErrResponseLater) {
		if w.respondLater() {
			return
		}
		log.Error("httpconsumer: handler panicked with ErrResponseLater after its response had started; ending the response",
			"method", r.Method, "path", r.URL.Path, "reply_channel", w.m.ReplyChannel)
		w.finish()
		return
	}
	stack := debug.Stack()
	if v == http.ErrAbortHandler {
		log.Debug("httpconsumer: handler aborted", "method", r.Method, "path", r.URL.Path)
	} else {
		log.Error("httpconsumer: handler panicked", "panic", fmt.Sprint(v), "method", r.Method, "path", r.URL.Path,
			"reply_channel", w.m.ReplyChannel, "stack", string(stack))
	}
	body := "Internal Server Error"
	if c.Debug {
		body = fmt.Sprintf("Internal Server Error\n\npanic: %v\n\n%s", v, stack)
	}
	w.abort(body)
}

// sendPlain sends a complete text/plain response produced by the consumer
// itself.
func (c *Consumer) sendPlain(ctx context.Context, m *channels.Message, status int, body string) error {
	return c.send(ctx, m, plainResponse(status, body))
}

func plainResponse(status int, body string) channels.Content {
	return channels.Content{
		"status":       int64(status),
		"headers":      []any{[]any{[]byte("Content-Type"), []byte("text/plain; charset=utf-8")}},
		"content":      []byte(body),
		"more_content": false,
	}
}

// send sends one response message at once (as with channels.Immediately),
// retrying every RetryInterval while the reply channel is full, for at most
// SendTimeout. The layer takes content over without copying it (see
// owned.Sender): content must be in normal form (int64, []byte,
// []any, ...), and neither it nor anything it holds may be changed or
// reused once sent.
func (c *Consumer) send(ctx context.Context, m *channels.Message, content channels.Content) error {
	timeout := c.sendTimeout()
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	var t *time.Timer
	for {
		var err error
		if m.Layer != nil && m.ReplyChannel != "" {
			err = owned.Send(ctx, m.Layer, m.ReplyChannel, content)
		} else {
			err = m.Reply(ctx, content, channels.Immediately)
		}
		if err == nil {
			return nil
		}
		if !errors.Is(err, channels.ErrChannelFull) {
			return fmt.Errorf("httpconsumer: send response to %q: %w", m.ReplyChannel, err)
		}
		if timeout > 0 && time.Now().Add(RetryInterval).After(deadline) {
			return fmt.Errorf("httpconsumer: reply channel %q still full after %v: %w", m.ReplyChannel, timeout, err)
		}
		if t == nil {
			t = time.NewTimer(RetryInterval)
			defer t.Stop()
		} else {
			t.Reset(RetryInterval)
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("httpconsumer: send response to %q: %w", m.ReplyChannel, ctx.Err())
		}
	}
}

// requestInfo is what the accessors read from a request's context.
type requestInfo struct {
	msg        *channels.Message
	w          *responseWriter
	rootPath   string
	scheme     string
	serverName string
	serverPort string
}

type infoKey struct{}

func infoFrom(r *http.Request) *requestInfo {
	info, _ := r.Context().Value(infoKey{}).(*requestInfo)
	return info
}

// RootPath returns the mount point the interface server reported for the
// request ("root_path", like WSGI's SCRIPT_NAME), such as "/forum", or ""
// when there is none or r was not made by a Consumer. r.URL.Path has had it
// removed; prepend it to build absolute links. Safe for concurrent use.
func RootPath(r *http.Request) string {
	if info := infoFrom(r); info != nil {
		return info.rootPath
	}
	return ""
}

// ServerName returns the host name or address the request arrived on (the
// first element of "server"), or "unknown" when the message has none or r
// was not made by a Consumer. Safe for concurrent use.
func ServerName(r *http.Request) string {
	if info := infoFrom(r); info != nil && info.serverName != "" {
		return info.serverName
	}
	return "unknown"
}

// ServerPort returns the port the request arrived on, always as a string
// (SERVER_PORT): "80" for "server": ["10.0.0.2", 80], "0" when the message
// has no server or r was not made by a Consumer. Safe for concurrent use.
func ServerPort(r *http.Request) string {
	if info := infoFrom(r); info != nil && info.serverPort != "" {
		return info.serverPort
	}
	return "0"
}

// Scheme returns the scheme the client used, "http" or "https" (the
// message's "scheme", "http" when absent), or "" when r was not made by a
// Consumer. For "https" r.TLS is also set, to a tls.ConnectionState with
// HandshakeComplete true and nothing else: TLS ended at the interface
// server, so no certificates or cipher details reach the worker. Code that
// tests r.TLS != nil to decide whether a request was secure works
// unchanged. Safe for concurrent use.
func Scheme(r *http.Request) string {
	if info := infoFrom(r); info != nil {
		return info.scheme
	}
	return ""
}

// Message returns the message r was made from, or nil when r was not made by
// a Consumer. Its ReplyChannel is where the response goes; a handler that
// calls RespondLater keeps it so another consumer can answer. The message
// belongs to the consumer: read it, do not change it.
func Message(r *http.Request) *channels.Message {
	if info := infoFrom(r); info != nil {
		return info.msg
	}
	return nil
}

// RespondLater tells the consumer running r that another consumer will
// answer on the request's reply channel (the long-poll pattern): nothing is
// sent for this request, what the handler wrote or writes is discarded, and
// later writes fail with ErrResponseLater. It reports false, and changes
// nothing, when r was not made by a Consumer or the response has already
// started going out. Safe for concurrent use.
func RespondLater(r *http.Request) bool {
	if info := infoFrom(r); info != nil {
		return info.w.respondLater()
	}
	return false
}
