package httpconsumer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gochannels/channels"
)

// errFinished is returned by writes made after the handler returned.
var errFinished = errors.New("httpconsumer: write after the handler returned")

// sniffLen is how much of the body http.DetectContentType looks at.
const sniffLen = 512

// responseWriter turns what a handler writes into Response and Response
// Chunk messages (messages.md §3.3, §3.4). Its methods may be called from
// several goroutines; they are serialised, and a send to a full reply
// channel blocks the writer until it succeeds or gives up.
type responseWriter struct {
	c      *Consumer
	ctx    context.Context // for sends; unlike the request's, it outlives the handler
	m      *channels.Message
	head   bool        // a HEAD request: the body is counted and sniffed, never sent
	header http.Header // the handler's header map
	info   requestInfo // what the accessors return, allocated with the writer

	mu            sync.Mutex
	status        int         // 0 until WriteHeader
	sent          http.Header // the header as it was at WriteHeader
	contentLength int64       // the handler's Content-Length, or -1
	buf           []byte      // written, not yet sent; at most ChunkSize bytes
	written       int64       // body bytes accepted
	started       bool        // the first message has gone out
	streaming     bool        // Flush was called
	done          bool        // the response is complete
	later         bool        // RespondLater: nothing is sent
	err           error       // the first send error; the response is broken
}

var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ http.Flusher        = (*responseWriter)(nil)
)

// Header returns the header map the response will carry. As in net/http,
// changes after WriteHeader or the first Write have no effect.
func (w *responseWriter) Header() http.Header { return w.header }

// WriteHeader sets the status. Informational statuses (1xx other than 101)
// cannot be relayed over a channel layer and are ignored; like net/http it
// panics on a code outside 100–999.
func (w *responseWriter) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.writeHeaderLocked(code)
}

func (w *responseWriter) writeHeaderLocked(code int) {
	if w.done || w.later {
		return
	}
	if w.status != 0 {
		w.c.logger().Warn("httpconsumer: superfluous WriteHeader call", "code", code, "status", w.status, "path", w.m.Content.String("path"))
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		return
	}
	w.status = code
	w.sent = w.header.Clone()
	if w.sent == nil {
		w.sent = make(http.Header)
	}
	w.contentLength = -1
	if cl := w.sent.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(cl), 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		}
	}
}

// Write adds p to the body. Once more than ChunkSize bytes are waiting, a
// ChunkSize piece is sent, so Write may block on a full reply channel.
func (w *responseWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return 0, err
	}
	if w.status == 0 {
		w.writeHeaderLocked(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.contentLength >= 0 && w.written > w.contentLength {
		return 0, http.ErrContentLength
	}
	if w.head {
		if room := sniffLen - len(w.buf); room > 0 {
			w.buf = append(w.buf, p[:min(room, len(p))]...)
		}
		return len(p), nil
	}
	size := w.c.chunkSize()
	n := len(p)
	for len(p) > 0 {
		// A full buffer goes out only when more follows, so that the last
		// piece of an unflushed body is the one that ends the response.
		if len(w.buf) >= size {
			if err := w.sendBuffered(true); err != nil {
				return 0, err
			}
		}
		k := min(size-len(w.buf), len(p))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
	}
	return n, nil
}

// Flush sends what has been written (and the status and headers, if they
// have not gone out) at once; from then on the response is streaming.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports a failed send; http.ResponseController
// calls it.
func (w *responseWriter) FlushError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	if w.status == 0 {
		w.writeHeaderLocked(http.StatusOK)
	}
	w.streaming = true
	if w.started && (len(w.buf) == 0 || w.head) {
		return nil
	}
	return w.sendBuffered(true)
}

func (w *responseWriter) usable() error {
	switch {
	case w.later:
		return ErrResponseLater
	case w.done:
		return errFinished
	}
	return w.err
}

// finish ends the response once the handler has returned.
func (w *responseWriter) finish() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.later {
		w.done = true
		return
	}
	if w.status == 0 {
		w.writeHeaderLocked(http.StatusOK)
	}
	w.done = true
	if w.err != nil {
		return
	}
	switch {
	case !w.started || !w.streaming:
		// The whole body, or its last piece: it ends the response.
		_ = w.sendBuffered(false)
	default:
		if len(w.buf) > 0 && !w.head {
			if w.sendBuffered(true) != nil {
				return
			}
		}
		w.err = w.c.send(w.ctx, w.m, channels.Content{"more_content": false})
	}
}

// abort ends the response of a handler that panicked: a 500 with body when
// nothing has been sent, otherwise the final message (the 1.0 protocol has
// no way to abort a started response).
func (w *responseWriter) abort(body string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done || w.later {
		w.done = true
		return
	}
	w.done = true
	if w.err != nil {
		return
	}
	if !w.started {
		w.started = true
		w.err = w.c.send(w.ctx, w.m, plainResponse(http.StatusInternalServerError, body))
		return
	}
	w.err = w.c.send(w.ctx, w.m, channels.Content{"more_content": false})
}

// respondLater discards the response unless it has started going out.
func (w *responseWriter) respondLater() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.later {
		return true
	}
	if w.started || w.done {
		return false
	}
	w.later = true
	w.buf = nil
	return true
}

func (w *responseWriter) error() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// sendBuffered sends the buffer as one message, the first one with the
// status and headers, and empties it.
func (w *responseWriter) sendBuffered(more bool) error {
	content := w.buf
	if w.head {
		content = nil
	}
	if content == nil {
		content = []byte{}
	}
	var msg channels.Content
	first := !w.started
	if first {
		msg = w.responseMessage(!more)
	} else {
		msg = make(channels.Content, 2)
	}
	msg["content"] = content
	msg["more_content"] = more
	w.started = true
	err := w.c.send(w.ctx, w.m, msg)
	if first && errors.Is(err, channels.ErrMessageTooLarge) {
		// The status and headers alone are over the layer's limit: the
		// client gets a 500 rather than waiting for a timeout.
		w.c.logger().Error("httpconsumer: response headers too large for the layer; sending 500", "path", w.m.Content.String("path"), "error", err)
		if w.c.send(w.ctx, w.m, plainResponse(http.StatusInternalServerError, "Internal Server Error")) == nil {
			w.done = true
		}
	}
	// The sent message owns the buffer (Consumer.send): the next piece
	// gets a new one.
	if more {
		w.buf = make([]byte, 0, cap(w.buf))
	} else {
		w.buf = nil
	}
	if err != nil {
		w.err = err
	}
	return err
}

// responseMessage starts the Response message: status and headers, with
// Content-Type sniffed and, for a complete response, Content-Length added,
// as net/http does.
func (w *responseWriter) responseMessage(complete bool) channels.Content {
	h := w.sent
	allowed := bodyAllowed(w.status)
	_, hasType := h["Content-Type"]
	hasTE := h.Get("Transfer-Encoding") != ""
	if !hasType && allowed && !hasTE && h.Get("Content-Encoding") == "" && len(w.buf) > 0 {
		h.Set("Content-Type", http.DetectContentType(w.buf[:min(len(w.buf), sniffLen)]))
	}
	if complete && allowed && !hasTE && h.Get("Content-Length") == "" && !(w.head && w.written == 0) {
		h.Set("Content-Length", strconv.FormatInt(w.written, 10))
	}
	return channels.Content{"status": int64(w.status), "headers": encodeHeaders(h)}
}

// encodeHeaders lists h as [name bytes, value bytes] pairs: names as the
// handler wrote them, sorted, each name's values in order, then one
// Set-Cookie pair per cookie. Trailers cannot be relayed and are left out;
// so are names that are not valid tokens. Values are trimmed, their line
// breaks become spaces (as net/http writes them) and they are encoded as
// Latin-1 when every character fits.
func encodeHeaders(h http.Header) []any {
	names := make([]string, 0, len(h)+1)
	n := 0
	for name, values := range h {
		if name == "Set-Cookie" || name == "Trailer" || strings.HasPrefix(name, http.TrailerPrefix) || !validToken(name) {
			continue
		}
		names = append(names, name)
		n += len(values)
	}
	slices.Sort(names)
	names = append(names, "Set-Cookie")
	n += len(h["Set-Cookie"])

	// One allocation each for the list, the pairs and the bytes, and the
	// names of common headers shared (see responseNames). The message is
	// the layer's once sent (Consumer.send): nothing here is reused.
	size := 0
	for _, name := range names {
		_, common := responseNames[name]
		for _, v := range h[name] {
			size += len(v)
			if !common {
				size += len(name)
			}
		}
	}
	out := make([]any, 0, n)
	pairs := make([]any, 2*n)
	buf := make([]byte, 0, size)
	for _, name := range names {
		nameBytes, common := responseNames[name]
		for _, v := range h[name] {
			if !common {
				start := len(buf)
				buf = append(buf, name...)
				nameBytes = buf[start:len(buf):len(buf)]
			}
			start := len(buf)
			buf = appendValue(buf, v)
			pair := pairs[:2:2]
			pairs = pairs[2:]
			pair[0], pair[1] = nameBytes, buf[start:len(buf):len(buf)]
			out = append(out, pair)
		}
	}
	return out
}

// responseNames are the names of common response headers, in the
// canonical form of an http.Header key, as the []byte values the Response
// message carries, boxed once and shared by every message: the interface
// server reads them and must not modify them.
var responseNames = func() map[string]any {
	m := make(map[string]any)
	for _, k := range []string{
		"Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Security-Policy", "Content-Type", "Date", "Etag", "Expires", "Last-Modified", "Location",
		"Referrer-Policy", "Set-Cookie", "Strict-Transport-Security", "Vary", "X-Content-Type-Options",
		"X-Frame-Options",
	} {
		m[k] = []byte(k)
	}
	return m
}()

// appendValue appends a header value as it is sent: trimmed, line breaks
// turned into spaces, encoded as Latin-1 when every character fits and as
// the bytes written otherwise (what net/http sends). It never appends more
// than len(v) bytes.
func appendValue(buf []byte, v string) []byte {
	v = textproto.TrimString(v)
	start := len(buf)
	latin := utf8.ValidString(v)
	for _, r := range v {
		if r > 0xFF {
			latin = false
			break
		}
	}
	if !latin {
		buf = append(buf, v...)
	} else {
		for _, r := range v {
			buf = append(buf, byte(r))
		}
	}
	for i := start; i < len(buf); i++ {
		if buf[i] == '\r' || buf[i] == '\n' {
			buf[i] = ' '
		}
	}
	return buf
}

// bodyAllowed reports whether a response with status may have a body.
func bodyAllowed(status int) bool {
	switch {
	case status >= 100 && status <= 199:
		return false
	case status == http.StatusNoContent, status == http.StatusNotModified:
		return false
	}
	return true
}
