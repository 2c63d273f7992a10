package gateway

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/owned"
)

// httpReq is a live HTTP request: the mailbox its reply messages are
// delivered to.
type httpReq struct {
	cfg    *config // its OutboundQueue and OutboundBytes bound the queue
	mu     sync.Mutex
	queue  []channels.Content
	queued int64 // body bytes in queue
	over   bool
	notify chan struct{}
	first  [1]channels.Content // the queue's first array: most responses are one message
}

func (h *httpReq) deliver(c channels.Content) {
	var size int64
	if b, ok := c["content"].([]byte); ok {
		size = int64(len(b))
	}
	h.mu.Lock()
	switch {
	case h.over:
	case h.cfg.outboundFull(len(h.queue), h.queued, size):
		h.over = true
	default:
		h.queue = append(h.queue, c)
		h.queued += size
	}
	h.mu.Unlock()
	select {
	case h.notify <- struct{}{}:
	default:
	}
}

// take returns the queued messages, and whether some were refused; spare
// (what an earlier take returned, done with) becomes the new queue's array.
func (h *httpReq) take(spare []channels.Content) ([]channels.Content, bool) {
	clear(spare)
	h.mu.Lock()
	defer h.mu.Unlock()
	q := h.queue
	if len(q) == 0 { // the queue keeps its array
		return spare[:0], h.over
	}
	h.queue = spare[:0]
	h.queued = 0
	return q, h.over
}

func (h *httpReq) pending() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.queue) > 0 || h.over
}

// requestMsgs holds http.request maps for layers that encode what they
// send (see run).
var requestMsgs = sync.Pool{New: func() any { return make(channels.Content, 12) }}

// httpExchange is the state of one request sent over the layer.
type httpExchange struct {
	s        *Server
	w        http.ResponseWriter
	rc       http.ResponseController
	r        *http.Request
	ri       requestInfo
	start    time.Time
	deadline time.Time // zero when HTTPTimeout is off
	reply    string
	mail     *httpReq
	mailbox  httpReq     // what mail points to
	body     chunkReader // the request body, cut into messages

	started  bool // status line sent
	answered bool // the application completed its response
	status   int
	size     int64
	aborted  bool // the connection must be dropped
	// writeDeadline: apply set a write deadline for the response it
	// wrote, which also bounds net/http's final flush.
	writeDeadline bool
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request, start time.Time) {
	s.stats.httpRequests.Add(1)
	s.stats.httpInFlight.Add(1)
	defer s.stats.httpInFlight.Add(-1)
	path, perr := decodePath(r)
	if perr != "" {
		n := writeErrorPage(w, http.StatusBadRequest, string(perr))
		client := s.info(r, r.URL.Path).clientS
		s.accessLog("http", "complete", r.Method+" "+r.RequestURI, ActionDetails{
			Path: r.URL.Path, Client: client, Method: r.Method, Status: 400, Size: n, TimeTaken: time.Since(start),
		}, 400, n)
		return
	}
	ri := s.info(r, path)
	if s.HTTPHandler != nil {
		// A write deadline set during an earlier request on this
		// keep-alive connection must not cut this one.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Time{})
		s.serveLocal(w, r, ri, start)
		return
	}
	x := &httpExchange{s: s, w: w, rc: *http.NewResponseController(w), r: r, ri: ri, start: start}
	rc := &x.rc
	// Nor here; but with WriteTimeout on, a request without a body needs
	// no clearing: nothing is written to the connection before a deadline
	// of its own is set (apply sets one before writing, the deferred
	// function below before net/http writes an error page, and no "100
	// Continue" is sent for a bodiless request).
	if s.cfg.writeTimeout <= 0 || r.Body != http.NoBody {
		_ = rc.SetWriteDeadline(time.Time{})
	}
	if s.cfg.httpTimeout > 0 {
		x.deadline = start.Add(s.cfg.httpTimeout)
	}
	defer func() {
		if s.cfg.writeTimeout > 0 && !x.writeDeadline { // bounds net/http's final flush
			_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.writeTimeout))
		}
		if s.OnAction != nil || s.AccessLog != nil {
			s.accessLog("http", "complete", r.Method+" "+ri.rawURI, ActionDetails{
				Path: ri.path, Client: ri.clientS, Method: r.Method, Status: x.status, Size: x.size, TimeTaken: time.Since(start),
			}, x.status, x.size)
		}
		if x.aborted {
			panic(http.ErrAbortHandler)
		}
	}()
	x.run()
}

// run sends the request and relays the response.
func (x *httpExchange) run() {
	s, r := x.s, x.r
	if max := s.cfg.maxBody; max >= 0 {
		if r.ContentLength > max {
			s.stats.tooLarge.Add(1)
			x.errorPage(http.StatusRequestEntityTooLarge, "Request body too large.")
			return
		}
		if r.Body != http.NoBody { // kept as is: noBody below tests for it
			r.Body = http.MaxBytesReader(x.w, r.Body, max)
		}
	}
	// A bodiless request reads nothing from the connection: no read
	// deadline to set, nor to lift afterwards, and no chunk to read.
	noBody := r.Body == http.NoBody
	readDeadline := !x.deadline.IsZero() && !noBody
	if readDeadline {
		_ = x.rc.SetReadDeadline(x.deadline)
	}
	x.body = chunkReader{r: r.Body, hint: int(min(max(r.ContentLength, 512), InlineBodySize))}
	body := &x.body
	if r.ContentLength == 0 {
		body.hint = 0
	}
	var (
		first []byte
		eof   bool
		err   error
	)
	if noBody {
		first, eof, body.done = []byte{}, true, true
	} else {
		first, eof, err = body.next()
	}
	if err != nil {
		switch {
		case isMaxBytes(err):
			s.stats.tooLarge.Add(1)
			x.errorPage(http.StatusRequestEntityTooLarge, "Request body too large.")
		case errors.Is(err, os.ErrDeadlineExceeded):
			s.stats.httpTimeouts.Add(1)
			x.errorPage(http.StatusServiceUnavailable, "Worker server failed to respond within time limit.")
		case malformedBody(r, err):
			x.badBody(err)
		default:
			x.aborted = true // the client went away mid-body; the app never heard of it
		}
		return
	}
	ctx := context.Background()
	reply, err := s.Layer.NewChannel(ctx, s.httpPfx)
	if err != nil {
		s.log.Error("creating a reply channel failed", "error", err)
		x.errorPage(http.StatusServiceUnavailable, "Channel layer unavailable.")
		return
	}
	x.reply = reply
	x.mailbox = httpReq{cfg: &s.cfg, notify: make(chan struct{}, 1)}
	x.mail = &x.mailbox
	x.mail.queue = x.mail.first[:0]
	s.reg.add(reply, x.mail)
	// Boxed once for http.request and http.disconnect.
	replyV, pathV := any(reply), any(x.ri.path)
	defer func() {
		s.reg.remove(reply)
		if !x.answered || s.WantsHTTPDisconnect == nil || s.WantsHTTPDisconnect(reply, x.ri.path) {
			s.sendDisconnect("http.disconnect", channels.Content{"reply_channel": replyV, "path": pathV})
		}
	}()

	var bodyChannel any
	if !eof {
		bc, err := s.Layer.NewChannel(ctx, "http.request.body?")
		if err != nil {
			s.log.Error("creating a body channel failed", "error", err)
			x.errorPage(http.StatusServiceUnavailable, "Channel layer unavailable.")
			return
		}
		bodyChannel = bc
	}
	// A layer that encodes every message keeps nothing of it once Send
	// returns (package encoded): the map serves the next request.
	var msg channels.Content
	if s.cfg.layerEncodes {
		msg = requestMsgs.Get().(channels.Content)
		defer func() {
			clear(msg)
			requestMsgs.Put(msg)
		}()
	} else {
		msg = make(channels.Content, 12)
	}
	msg["reply_channel"] = replyV
	msg["http_version"] = boxedVersion(r)
	msg["method"] = boxedMethod(r.Method)
	msg["scheme"] = boxedScheme(x.ri.scheme)
	msg["path"] = pathV
	msg["query_string"] = boxedBytes(x.ri.query)
	msg["root_path"] = x.ri.rootPath
	msg["headers"] = x.ri.headers
	msg["body"] = boxedBytes(first)
	msg["body_channel"] = bodyChannel
	msg["client"] = orNull(x.ri.client)
	msg["server"] = orNull(x.ri.server)
	if err := owned.Send(ctx, s.Layer, "http.request", msg); err != nil {
		if errors.Is(err, channels.ErrChannelFull) {
			s.stats.requestFull.Add(1)
			x.errorPage(http.StatusServiceUnavailable, "Request queue full.")
			return
		}
		if errors.Is(err, channels.ErrMessageTooLarge) {
			s.stats.tooLarge.Add(1)
			s.log.Warn("request too large for the channel layer (headers?)", "path", x.ri.path, "error", err)
			x.errorPage(http.StatusRequestEntityTooLarge, "Request too large.")
			return
		}
		s.log.Error("sending http.request failed", "error", err)
		x.errorPage(http.StatusServiceUnavailable, "Channel layer unavailable.")
		return
	}
	if bodyChannel != nil && !x.streamBody(body, bodyChannel.(string)) {
		return
	}
	// The body is read: lift its deadline, which would otherwise make
	// net/http report the client as gone when it passes.
	if readDeadline {
		_ = x.rc.SetReadDeadline(time.Time{})
	}
	x.relay()
}

// streamBody sends the rest of the body as Request Body Chunks, waiting on a
// full channel. It reports false when the exchange is over (client gone,
// body too large, timeout) and true when the response should be relayed
// (body done, or the application answered before reading all of it).
func (x *httpExchange) streamBody(body *chunkReader, channel string) bool {
	s := x.s
	for {
		chunk, eof, err := body.next()
		if err != nil {
			_ = x.sendChunk(channel, channels.Content{"closed": true})
			if isMaxBytes(err) {
				s.stats.tooLarge.Add(1)
				x.errorPage(http.StatusRequestEntityTooLarge, "Request body too large.")
				return false
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.stats.httpTimeouts.Add(1)
				x.errorPage(http.StatusServiceUnavailable, "Worker server failed to respond within time limit.")
				return false
			}
			if malformedBody(x.r, err) {
				x.badBody(err)
				return false
			}
			x.aborted = true
			return false
		}
		switch err := x.sendChunk(channel, channels.Content{"content": chunk, "more_content": !eof}); {
		case err == errAnswered:
			return true
		case err != nil:
			return false
		}
		if eof {
			return true
		}
	}
}

var errAnswered = errors.New("gateway: the application answered")

// sendChunk sends one body chunk, retrying while the channel is full. It
// stops early with errAnswered when the response starts arriving, and with
// another error (after answering the client) on timeout, client loss or a
// layer error.
func (x *httpExchange) sendChunk(channel string, c channels.Content) error {
	s := x.s
	var t *time.Timer
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := s.Layer.Send(context.Background(), channel, c)
		if err == nil || c["closed"] == true {
			return nil
		}
		if !errors.Is(err, channels.ErrChannelFull) {
			s.log.Error("sending a request body chunk failed", "channel", channel, "error", err)
			x.errorPage(http.StatusServiceUnavailable, "Channel layer unavailable.")
			return err
		}
		if x.mail.pending() {
			return errAnswered
		}
		if t == nil {
			t = time.NewTimer(wait)
			defer t.Stop()
		} else {
			t.Reset(wait)
		}
		select {
		case <-t.C:
		case <-x.mail.notify:
			select { // keep the signal for relay
			case x.mail.notify <- struct{}{}:
			default:
			}
			return errAnswered
		case <-x.r.Context().Done():
			x.aborted = true
			return context.Canceled
		case <-x.timeoutC():
			x.timeout()
			return context.DeadlineExceeded
		case <-x.s.closed:
			x.closing()
			return ErrServerClosed
		}
	}
}

var neverC = make(chan time.Time)

func (x *httpExchange) timeoutC() <-chan time.Time {
	if x.deadline.IsZero() {
		return neverC
	}
	d := time.Until(x.deadline)
	if d <= 0 {
		c := make(chan time.Time, 1)
		c <- time.Now()
		return c
	}
	return time.After(d)
}

// relay writes the reply messages to the client until the response is
// complete, the client goes away, the server closes or the time is up.
func (x *httpExchange) relay() {
	var timeout <-chan time.Time
	if !x.deadline.IsZero() {
		t := getTimer(time.Until(x.deadline))
		defer putTimer(t)
		timeout = t.C
	}
	var msgs []channels.Content
	for {
		var over bool
		msgs, over = x.mail.take(msgs)
		for _, m := range msgs {
			if x.apply(m) {
				return
			}
		}
		if over {
			x.s.stats.slow.Add(1)
			x.s.log.Warn("HTTP response aborted: the client reads slower than the application writes", "path", x.ri.path, "client", x.ri.clientS)
			x.aborted = true
			return
		}
		select {
		case <-x.mail.notify:
		case <-timeout:
			x.timeout()
			return
		case <-x.r.Context().Done():
			x.aborted = true
			return
		case <-x.s.closed:
			x.closing()
			return
		}
	}
}

func (x *httpExchange) timeout() {
	x.s.stats.httpTimeouts.Add(1)
	if x.started {
		x.s.log.Warn("HTTP timeout while streaming a response; aborting the connection", "path", x.ri.path)
		x.aborted = true
		return
	}
	x.errorPage(http.StatusServiceUnavailable, "Worker server failed to respond within time limit.")
}

func (x *httpExchange) closing() {
	if x.started {
		x.aborted = true
		return
	}
	x.errorPage(http.StatusServiceUnavailable, "Server shutting down.")
}

func (x *httpExchange) errorPage(code int, detail string) {
	x.status = code
	x.size = writeErrorPage(x.w, code, detail)
	x.started = true
}

// apply writes one Response or Response Chunk message; it reports whether
// the exchange is over.
func (x *httpExchange) apply(m channels.Content) bool {
	s := x.s
	if !x.started {
		status, ok := m.Int("status")
		if !ok || status < 200 || status > 999 {
			s.stats.invalidReplies.Add(1)
			s.log.Error("the first response message has no valid status; answering 500", "path", x.ri.path, "status", m["status"])
			x.errorPage(http.StatusInternalServerError, "The application sent an invalid response.")
			x.answered = true
			return true
		}
		h := x.w.Header()
		if hs, ok := m["headers"].([]any); ok {
			x.addHeaders(h, hs)
		} else if m.Has("headers") {
			s.stats.invalidReplies.Add(1)
			s.log.Error("response headers are not a list; ignored", "path", x.ri.path)
		}
		if _, ok := h["Content-Type"]; !ok {
			h["Content-Type"] = nil // no content sniffing
		}
		if x.chunkedByDefault(h, int(status)) {
			h["Transfer-Encoding"] = chunked
		}
		x.status = int(status)
		x.w.WriteHeader(x.status)
		x.started = true
	} else if m.Has("status") {
		s.stats.invalidReplies.Add(1)
		s.log.Error("multiple Response messages for one request; ignored", "path", x.ri.path)
		return false
	}
	var content []byte
	switch v := m["content"].(type) {
	case []byte:
		content = v
	case string:
		content = []byte(v)
	}
	if s.cfg.writeTimeout > 0 {
		_ = x.rc.SetWriteDeadline(time.Now().Add(s.cfg.writeTimeout))
		x.writeDeadline = true
	}
	if len(content) > 0 {
		n, err := x.w.Write(content)
		x.size += int64(n)
		switch {
		case errors.Is(err, http.ErrBodyNotAllowed):
			s.log.Debug("response content dropped: the status allows no body", "path", x.ri.path, "status", x.status)
		case err != nil:
			x.writeFailed(err)
			return true
		}
	}
	if !m.Bool("more_content") {
		// The last message: net/http writes what is buffered, and the
		// terminating chunk, when the handler returns, in one system call;
		// a flush here would cost a second one.
		x.answered = true
		return true
	}
	if err := x.rc.Flush(); err != nil { // a streamed chunk goes out now
		x.writeFailed(err)
		return true
	}
	return false
}

// chunkedByDefault reports whether a response gets chunked framing (spec
// §3.6: HTTP/1.1, no Content-Length from the app, a body allowed). net/http
// would instead send a small complete response with a Content-Length of
// its own; saying "chunked" up front keeps Daphne's framing without a
// flush per response.
func (x *httpExchange) chunkedByDefault(h http.Header, status int) bool {
	if !x.r.ProtoAtLeast(1, 1) || x.r.Method == http.MethodHead {
		return false
	}
	if status < 200 || status == http.StatusNoContent || status == http.StatusNotModified {
		return false
	}
	_, cl := h["Content-Length"]
	_, te := h["Transfer-Encoding"]
	return !cl && !te
}

func (x *httpExchange) writeFailed(err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		x.s.stats.slow.Add(1)
		x.s.log.Warn("HTTP response aborted: writing to the client timed out", "path", x.ri.path, "client", x.ri.clientS)
	}
	x.aborted = true
}

// chunked is the Transfer-Encoding header value of chunkedByDefault,
// shared by every response (net/http replaces header values, it does not
// modify them).
var chunked = []string{"chunked"}

// canonicalNames maps common response header names, as applications
// spell them, to their canonical http.Header keys.
var canonicalNames = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Length",
		"Content-Security-Policy", "Content-Type", "Date", "Etag", "Expires", "Last-Modified", "Location",
		"Referrer-Policy", "Set-Cookie", "Strict-Transport-Security", "Vary", "X-Content-Type-Options",
		"X-Frame-Options",
	} {
		m[k] = k
		m[strings.ToLower(k)] = k
	}
	return m
}()

// addHeaders adds the application's [name, value] response headers, with
// text or bytes parts (text is encoded as Latin-1), to h; invalid ones are
// counted, logged and left out. The values, and the names that are not
// common ones, are copied into one string, and the lists of single values
// share one array: two allocations per response rather than two per
// header.
func (x *httpExchange) addHeaders(h http.Header, hs []any) {
	type span struct {
		name       string // a common name; else the name is at buf[nameAt:at]
		nameAt, at int    // the value is at buf[at:end]
		end        int
	}
	var small [16]span
	spans := small[:0]
	size := 0
	for _, p := range hs {
		if pair, ok := p.([]any); ok && len(pair) == 2 {
			size += partSize(pair[0]) + partSize(pair[1])
		}
	}
	buf := make([]byte, 0, size)
	for _, p := range hs {
		sp, ok := span{}, false
		if pair, isPair := p.([]any); isPair && len(pair) == 2 {
			start := len(buf)
			if b, isBytes := pair[0].([]byte); isBytes {
				sp.name, ok = canonicalNames[string(b)] // no copy for a common name
			}
			if !ok {
				buf, ok = appendLatin1(buf, pair[0])
				ok = ok && validHeaderName(buf[start:])
			}
			sp.nameAt, sp.at = start, len(buf)
			if ok {
				buf, ok = appendLatin1(buf, pair[1])
				ok = ok && validHeaderValue(buf[sp.at:])
			}
			sp.end = len(buf)
			if !ok {
				buf = buf[:start]
			}
		}
		if !ok {
			x.s.stats.invalidReplies.Add(1)
			x.s.log.Error("invalid response header ignored", "path", x.ri.path, "header", p)
			continue
		}
		spans = append(spans, sp)
	}
	all := string(buf)
	vals := make([]string, len(spans))
	for i, sp := range spans {
		name := sp.name
		if name == "" {
			name = all[sp.nameAt:sp.at]
		}
		value := all[sp.at:sp.end]
		k, ok := canonicalNames[name]
		if !ok {
			k = textproto.CanonicalMIMEHeaderKey(name)
		}
		if len(h[k]) == 0 {
			vals[i] = value
			h[k] = vals[i : i+1 : i+1]
		} else {
			h[k] = append(h[k], value)
		}
	}
}

// partSize is the size of a header name or value at most, once encoded.
func partSize(v any) int {
	switch v := v.(type) {
	case []byte:
		return len(v)
	case string:
		return len(v)
	}
	return 0
}

// appendLatin1 appends a header name or value to b: bytes as they are,
// text encoded as Latin-1. It reports false for text that Latin-1 cannot
// encode and for other types.
func appendLatin1(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case []byte:
		return append(b, v...), true
	case string:
		for _, r := range v {
			if r > 0xFF {
				return b, false
			}
			b = append(b, byte(r))
		}
		return b, true
	}
	return b, false
}

func validHeaderName[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '!' || c == '#' || c == '$' || c == '%' || c == '&' || c == '\'' || c == '*' ||
			c == '+' || c == '-' || c == '.' || c == '^' || c == '_' || c == '`' || c == '|' || c == '~':
		default:
			return false
		}
	}
	return true
}

func validHeaderValue[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '\r' || c == '\n' || c == 0 {
			return false
		}
	}
	return true
}

// timers holds stopped timers for relay, which needs one per request.
var timers sync.Pool

// getTimer returns a timer that fires after d.
func getTimer(d time.Duration) *time.Timer {
	if t, ok := timers.Get().(*time.Timer); ok {
		t.Reset(d)
		return t
	}
	return time.NewTimer(d)
}

// putTimer stops t and keeps it for getTimer. (Since Go 1.23 a stopped
// timer's channel holds no stale value, so a reused timer cannot fire
// early.)
func putTimer(t *time.Timer) {
	t.Stop()
	timers.Put(t)
}

// Values of http.request keys boxed once: an interface holding a string
// that is not a constant costs an allocation per message.
var (
	boxedHTTP, boxedHTTPS     any = "http", "https"
	boxedV10, boxedV11, boxV2 any = "1.0", "1.1", "2"
	boxedMethods                  = map[string]any{
		"GET": "GET", "HEAD": "HEAD", "POST": "POST", "PUT": "PUT", "PATCH": "PATCH",
		"DELETE": "DELETE", "OPTIONS": "OPTIONS",
	}
)

func boxedScheme(s string) any {
	switch s {
	case "http":
		return boxedHTTP
	case "https":
		return boxedHTTPS
	}
	return s
}

func boxedMethod(m string) any {
	if b, ok := boxedMethods[m]; ok {
		return b
	}
	return m
}

func boxedVersion(r *http.Request) any {
	switch v := httpVersion(r); v {
	case "1.1":
		return boxedV11
	case "1.0":
		return boxedV10
	case "2":
		return boxV2
	default:
		return v
	}
}

// noBytes is an empty byte string boxed once: with no capacity, it cannot
// be changed, so messages can share it.
var noBytes any = []byte{}

// boxedBytes boxes b, sharing noBytes when b is empty (not nil).
func boxedBytes(b []byte) any {
	if b != nil && len(b) == 0 {
		return noBytes
	}
	return b
}

// orNull turns a missing address into null rather than an empty list.
func orNull(addr []any) any {
	if addr == nil {
		return nil
	}
	return addr
}

// malformedBody reports whether err, from reading r's body, says that the
// body is not valid chunked encoding, rather than that the client went
// away (EOF before the end, a network error).
func malformedBody(r *http.Request, err error) bool {
	if len(r.TransferEncoding) == 0 || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return false
	}
	var ne net.Error
	return !errors.As(err, &ne) && !errors.Is(err, net.ErrClosed)
}

// badBody answers a request whose chunked body is malformed with 400 (the
// connection is closed after it) and logs why.
func (x *httpExchange) badBody(err error) {
	x.s.log.Warn("HTTP request refused with 400: malformed chunked body", "method", x.r.Method, "path", x.ri.path, "client", x.ri.clientS, "error", err)
	x.errorPage(http.StatusBadRequest, "Malformed chunked request body.")
}

func isMaxBytes(err error) bool {
	var mb *http.MaxBytesError
	return errors.As(err, &mb)
}

// chunkReader cuts a body into chunks of at most InlineBodySize bytes and
// knows, after each, whether another follows.
type chunkReader struct {
	r    io.Reader
	hint int    // capacity of the first buffer
	peek []byte // one byte read ahead
	done bool
}

// next returns the next chunk and whether it is the last one.
func (c *chunkReader) next() ([]byte, bool, error) {
	if c.done {
		return []byte{}, true, nil
	}
	buf := make([]byte, 0, max(c.hint, len(c.peek)))
	c.hint = InlineBodySize
	buf = append(buf, c.peek...)
	c.peek = nil
	for len(buf) < InlineBodySize {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := c.r.Read(buf[len(buf):min(cap(buf), InlineBodySize)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			c.done = true
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	var one [1]byte
	for {
		n, err := c.r.Read(one[:])
		if n == 1 {
			c.peek = []byte{one[0]}
			return buf, false, nil
		}
		if err == io.EOF {
			c.done = true
			return buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// serveLocal is the fast path: the request goes straight to HTTPHandler.
func (s *Server) serveLocal(w http.ResponseWriter, r *http.Request, ri requestInfo, start time.Time) {
	if max := s.cfg.maxBody; max >= 0 {
		r.Body = http.MaxBytesReader(w, r.Body, max)
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		status := sw.status
		if status == 0 {
			status = http.StatusOK
		}
		s.accessLog("http", "complete", r.Method+" "+ri.rawURI, ActionDetails{
			Path: ri.path, Client: ri.clientS, Method: r.Method, Status: status, Size: sw.size, TimeTaken: time.Since(start),
		}, status, sw.size)
	}()
	s.HTTPHandler.ServeHTTP(sw, r)
}

// statusWriter records what a local handler wrote, for the access log.
type statusWriter struct {
	http.ResponseWriter
	status int
	size   int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.size += int64(n)
	return n, err
}

// Flush implements http.Flusher.
func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom keeps io.Copy's sendfile path.
func (w *statusWriter) ReadFrom(src io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, src)
	w.size += n
	return n, err
}
