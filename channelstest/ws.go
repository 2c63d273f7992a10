package channelstest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// WSFrame is one WebSocket message received by a WSClient.
type WSFrame struct {
	Binary bool   // a binary frame; false for text
	Data   []byte // the payload
}

// String returns the payload as text, marked when the frame was binary.
func (f WSFrame) String() string {
	if f.Binary {
		return fmt.Sprintf("bytes %q", f.Data)
	}
	return fmt.Sprintf("text %q", f.Data)
}

// WSClient is a WebSocket client for tests that talks to a live server
// over a real socket (see NewServer).
//
// Create it with NewWSClient, adjust the exported fields (headers, cookies,
// subprotocols), then Dial; or use DialWS for the common case. Methods that
// expect something (a frame, a close) fail the test with t.Fatal when it
// does not come within Timeout, saying what was expected. The client reads
// frames in its own goroutine, so pings are answered and close handshakes
// complete while the test is busy. A WSClient is not safe for concurrent
// use; the connection is dropped when the test ends.
type WSClient struct {
	// T is the test the client reports to.
	T TB
	// URL is the ws:// (or http://) address to dial.
	URL string
	// Header holds extra handshake headers. Without an "Origin" key the
	// handshake carries the origin of URL itself (http://host:port for
	// ws://host:port), as a page served by the same server would, so that
	// the gateway's default origin check accepts it; set Header["Origin"]
	// to nil to send none, as non-browser clients do.
	Header http.Header
	// Cookies are sent in the handshake's Cookie header (after any Cookie
	// already in Header).
	Cookies []*http.Cookie
	// Subprotocols are offered in Sec-WebSocket-Protocol, in order.
	Subprotocols []string
	// Timeout bounds every wait. Default DefaultTimeout.
	Timeout time.Duration

	// Response is the handshake's HTTP response, set by Dial and TryDial
	// (101 when accepted; for a rejection its Body holds the start of the
	// error page).
	Response *http.Response

	conn      *websocket.Conn
	transport *http.Transport

	mu       sync.Mutex
	frames   []WSFrame
	arrived  chan struct{} // signalled when a frame arrives
	done     chan struct{} // closed when the reader stops
	closeErr error
	echo     int // the server's answer to Close, when Close saw it
}

// NewWSClient returns a client for url that has not connected yet.
func NewWSClient(t TB, url string) *WSClient {
	return &WSClient{T: t, URL: url, Header: make(http.Header), Timeout: DefaultTimeout}
}

// DialWS connects to url and fails the test unless the handshake is
// accepted.
func DialWS(t TB, url string) *WSClient {
	t.Helper()
	c := NewWSClient(t, url)
	c.Dial()
	return c
}

func (c *WSClient) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return DefaultTimeout
}

// Dial performs the handshake and fails the test unless it is accepted
// (101). It blocks until the server answers, which a Channels server only
// does once the application has answered websocket.connect.
func (c *WSClient) Dial() {
	c.T.Helper()
	status, err := c.TryDial()
	if err != nil {
		body := ""
		if c.Response != nil && c.Response.Body != nil {
			b, _ := io.ReadAll(c.Response.Body)
			body = string(b)
		}
		c.T.Fatalf("channelstest: WebSocket handshake with %s: HTTP status %d: %v %s", c.URL, status, err, body)
	}
}

// TryDial performs the handshake and returns the HTTP status the server
// answered with: 101 when the socket opened, 403 when the application
// rejected it, 503 when the server could not queue it, 0 when no answer
// came (then err says why). err is nil only for 101.
func (c *WSClient) TryDial() (int, error) {
	c.T.Helper()
	if c.conn != nil {
		c.T.Fatalf("channelstest: WSClient.Dial called twice")
	}
	h := c.Header.Clone()
	if h == nil {
		h = make(http.Header)
	}
	if _, set := h["Origin"]; !set {
		h.Set("Origin", originOf(c.URL))
	}
	if len(c.Cookies) > 0 {
		parts := make([]string, 0, len(c.Cookies)+1)
		if v := h.Get("Cookie"); v != "" {
			parts = append(parts, v)
		}
		for _, ck := range c.Cookies {
			parts = append(parts, ck.String())
		}
		h.Set("Cookie", strings.Join(parts, "; "))
	}
	c.transport = &http.Transport{}
	c.T.Cleanup(c.transport.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, c.URL, &websocket.DialOptions{
		HTTPClient:   &http.Client{Transport: c.transport},
		HTTPHeader:   h,
		Subprotocols: c.Subprotocols,
	})
	c.Response = resp
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	if err != nil {
		c.transport.CloseIdleConnections()
		return status, fmt.Errorf("channelstest: dial %s: %w", c.URL, err)
	}
	conn.SetReadLimit(-1)
	c.conn = conn
	c.arrived = make(chan struct{}, 1)
	c.done = make(chan struct{})
	go c.read()
	c.T.Cleanup(func() {
		_ = conn.CloseNow()
		<-c.done
	})
	return status, nil
}

// originOf returns the origin of a page on the server at rawURL: the
// scheme (ws and wss as http and https) and host of the URL.
func originOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case "ws":
		scheme = "http"
	case "wss":
		scheme = "https"
	}
	return scheme + "://" + u.Host
}

func (c *WSClient) read() {
	defer close(c.done)
	for {
		typ, data, err := c.conn.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.closeErr = err
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.frames = append(c.frames, WSFrame{Binary: typ == websocket.MessageBinary, Data: data})
		c.mu.Unlock()
		select {
		case c.arrived <- struct{}{}:
		default:
		}
	}
}

func (c *WSClient) connected() {
	c.T.Helper()
	if c.conn == nil {
		c.T.Fatalf("channelstest: WSClient used before Dial")
	}
}

// Subprotocol returns the subprotocol the server chose, or "".
func (c *WSClient) Subprotocol() string {
	c.T.Helper()
	c.connected()
	return c.conn.Subprotocol()
}

func (c *WSClient) write(typ websocket.MessageType, p []byte) {
	c.T.Helper()
	c.connected()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout())
	defer cancel()
	if err := c.conn.Write(ctx, typ, p); err != nil {
		c.T.Fatalf("channelstest: send to %s: %v", c.URL, err)
	}
}

// SendText sends a text frame.
func (c *WSClient) SendText(s string) {
	c.T.Helper()
	c.write(websocket.MessageText, []byte(s))
}

// SendBytes sends a binary frame.
func (c *WSClient) SendBytes(b []byte) {
	c.T.Helper()
	c.write(websocket.MessageBinary, b)
}

// SendJSON sends v encoded as JSON in a text frame.
func (c *WSClient) SendJSON(v any) {
	c.T.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		c.T.Fatalf("channelstest: SendJSON: %v", err)
	}
	c.write(websocket.MessageText, b)
}

// next returns the next frame, waiting up to d; ok is false when none came
// (the connection closed, or the time ran out).
func (c *WSClient) next(d time.Duration) (WSFrame, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		c.mu.Lock()
		if len(c.frames) > 0 {
			f := c.frames[0]
			c.frames = c.frames[1:]
			c.mu.Unlock()
			return f, true
		}
		c.mu.Unlock()
		select {
		case <-c.arrived:
		case <-c.done:
			c.mu.Lock()
			n := len(c.frames)
			c.mu.Unlock()
			if n == 0 {
				return WSFrame{}, false
			}
		case <-t.C:
			return WSFrame{}, false
		}
	}
}

// Receive returns the next frame, failing the test if none arrives within
// Timeout or the connection closes first.
func (c *WSClient) Receive() WSFrame {
	c.T.Helper()
	c.connected()
	f, ok := c.next(c.timeout())
	if !ok {
		if code := c.CloseStatus(); code != 0 {
			c.T.Fatalf("channelstest: expected a frame from %s, but the connection closed with code %d", c.URL, code)
		}
		c.T.Fatalf("channelstest: expected a frame from %s within %v, got none", c.URL, c.timeout())
	}
	return f
}

// ReceiveText returns the next frame, which must be a text frame.
func (c *WSClient) ReceiveText() string {
	c.T.Helper()
	f := c.Receive()
	if f.Binary {
		c.T.Fatalf("channelstest: expected a text frame, got %v", f)
	}
	return string(f.Data)
}

// ReceiveBytes returns the next frame, which must be a binary frame.
func (c *WSClient) ReceiveBytes() []byte {
	c.T.Helper()
	f := c.Receive()
	if !f.Binary {
		c.T.Fatalf("channelstest: expected a binary frame, got %v", f)
	}
	return f.Data
}

// ReceiveJSON decodes the next frame (text or binary) as JSON into v.
func (c *WSClient) ReceiveJSON(v any) {
	c.T.Helper()
	f := c.Receive()
	dec := json.NewDecoder(bytes.NewReader(f.Data))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		c.T.Fatalf("channelstest: frame %v is not the JSON expected: %v", f, err)
	}
}

// ReceiveNothing waits d and fails the test if a frame arrives meanwhile.
func (c *WSClient) ReceiveNothing(d time.Duration) {
	c.T.Helper()
	c.connected()
	if f, ok := c.next(d); ok {
		c.T.Fatalf("channelstest: expected no frame within %v, got %v", d, f)
	}
}

// Close runs the closing handshake with code and reason and returns the
// code the server answered with (its echo; 1006 when the connection dropped
// without one). Frames that arrive meanwhile stay readable with Receive.
func (c *WSClient) Close(code int, reason string) int {
	c.T.Helper()
	c.connected()
	err := c.conn.Close(websocket.StatusCode(code), reason)
	got := c.WaitClosed()
	c.mu.Lock()
	defer c.mu.Unlock()
	// The closing handshake may have read the server's echo itself, before
	// the client's reader goroutine could see it.
	switch echo := websocket.CloseStatus(err); {
	case err == nil:
		c.echo = code // Close succeeds only when the echo matches
	case echo != -1:
		c.echo = int(echo)
	default:
		return got
	}
	return c.echo
}

// WaitClosed waits until the connection ends and returns its close code: the
// code of the server's close frame (1005 when it had none), or 1006 when
// the connection dropped without one. It fails the test when the
// connection is still open after Timeout. Frames that arrived before the
// close stay readable with Receive.
func (c *WSClient) WaitClosed() int {
	c.T.Helper()
	c.connected()
	t := time.NewTimer(c.timeout())
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.T.Fatalf("channelstest: expected %s to close the connection within %v", c.URL, c.timeout())
	}
	return c.CloseStatus()
}

// CloseStatus returns the close code seen so far: 0 while the connection
// is open, else as WaitClosed.
func (c *WSClient) CloseStatus() int {
	c.T.Helper()
	c.connected()
	select {
	case <-c.done:
	default:
		return 0
	}
	c.mu.Lock()
	err, echo := c.closeErr, c.echo
	c.mu.Unlock()
	if echo != 0 {
		return echo
	}
	if code := websocket.CloseStatus(err); code != -1 {
		return int(code)
	}
	return int(websocket.StatusAbnormalClosure)
}
