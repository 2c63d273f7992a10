package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/gochannels/channels/internal/rawio"
)

// NewListener wraps l so that a Server served through it can refuse what
// net/http hides from handlers: a request that carries both Content-Length
// and Transfer-Encoding (or Transfer-Encoding on HTTP/1.0). net/http drops
// Content-Length and reads such a body as chunked; RFC 9112 §6.1 calls the
// message a possible request-smuggling attempt and requires the connection
// to be closed after the response. Behind NewListener the Server answers
// it with 400 and closes the connection.
//
// The listener's connections copy nothing: they follow the request heads
// and body framing of the bytes the http.Server reads, keeping one header
// line at a time. Serve it with an http.Server from NewHTTPServer, whose
// ConnContext hands each connection's findings to the Server. TLS
// connections (*tls.Conn) are passed through as they are, since net/http
// needs their type, and are not checked.
//
// The connections also hold back net/http's background read for 20 ms
// (the read that cancels a request's context when the client goes away):
// a request answered sooner costs no system call for it, and a request's
// context learns that its client went away at most 20 ms later than on a
// plain listener.
func NewListener(l net.Listener) net.Listener { return &framingListener{Listener: l} }

type framingListener struct{ net.Listener }

func (l *framingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return c, err
	}
	if _, ok := c.(*tls.Conn); ok {
		return c, nil
	}
	// Requests and responses are read and written with raw system calls
	// (internal/rawio); WebSockets use the socket directly (plainSocket).
	fc := &framingConn{Conn: rawio.Wrap(c)}
	fc.addrs.init(c)
	return fc, nil
}

// framingKey is the context key under which NewHTTPServer's ConnContext
// stores a framingConn.
type framingKey struct{}

// framingContext is NewHTTPServer's ConnContext.
func framingContext(ctx context.Context, c net.Conn) context.Context {
	if fc, ok := c.(*framingConn); ok {
		return context.WithValue(ctx, framingKey{}, fc)
	}
	return ctx
}

// framingConn follows the HTTP/1.x messages read from a connection to find
// request heads with conflicting framing headers. Its findings are
// numbered by request; NewHTTPServer's handler counts the requests served
// on the connection (net/http serves them one at a time, in order), and the
// Server compares.
type framingConn struct {
	net.Conn

	addrs connAddrs // set before the connection is served, then read only

	mu     sync.Mutex
	p      framingParser
	served int    // requests handed to the handler so far
	bg     bgRead // net/http's background read, held (bgread.go)
}

// connAddrs are a connection's addresses as the client and server of
// http.request and websocket.connect messages, worked out and boxed once
// for all the requests served on it. Boxed strings and integers cannot be
// changed, so messages can share them.
type connAddrs struct {
	remote string // as net/http sets http.Request.RemoteAddr
	peer   netip.AddrPort
	peerOK bool
	client [2]any // host and port, when peerOK

	local  *net.TCPAddr // nil when the local address is not TCP
	server [2]any       // host and port, when local is set
}

func (a *connAddrs) init(c net.Conn) {
	if ra := c.RemoteAddr(); ra != nil {
		a.remote = ra.String()
		a.peer, a.peerOK = parseAddrPort(a.remote)
		if a.peerOK {
			a.client = [2]any{a.peer.Addr().Unmap().String(), int64(a.peer.Port())}
		}
	}
	if ta, ok := c.LocalAddr().(*net.TCPAddr); ok && ta != nil {
		ip, _ := netip.AddrFromSlice(ta.IP)
		a.local = ta
		a.server = [2]any{ip.Unmap().String(), int64(ta.Port)}
	}
}

// framingConnOf returns the framingConn r is served on, nil when r did not
// come through NewListener and NewHTTPServer.
func framingConnOf(r *http.Request) *framingConn {
	fc, _ := r.Context().Value(framingKey{}).(*framingConn)
	return fc
}

// NetConn returns the socket c wraps (without the raw-call wrapper under
// it), as tls.Conn's NetConn does.
func (c *framingConn) NetConn() net.Conn { return rawio.Unwrap(c.Conn) }

func (c *framingConn) Read(b []byte) (int, error) {
	if len(b) == 1 && c.holdBgRead() {
		return 0, errBgReadEnded
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.mu.Lock()
		c.p.feed(b[:n])
		c.mu.Unlock()
	}
	return n, err
}

// nextRequest counts a request handed to the handler and reports whether
// its head must be refused.
func (c *framingConn) nextRequest() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.served++
	return c.p.bad != 0 && c.p.bad == c.served
}

// current reports why the request being served must be refused ("" when
// it need not).
func (c *framingConn) current() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p.bad != 0 && c.p.bad == c.served {
		return c.p.why
	}
	return ""
}

// framingHandler is NewHTTPServer's handler: it counts the requests of
// each connection from NewListener, and makes sure that the connection of
// one with conflicting framing headers is closed after its response,
// whichever handler answers it (the Server answers 400).
type framingHandler struct{ next http.Handler }

func (h framingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if fc, _ := r.Context().Value(framingKey{}).(*framingConn); fc != nil && r.ProtoMajor == 1 && fc.nextRequest() {
		w.Header().Set("Connection", "close")
	}
	h.next.ServeHTTP(w, r)
}

// badFraming reports why r, served on a connection from NewListener by an
// http.Server from NewHTTPServer, must be refused with 400 and a closed
// connection; "" when it need not (or when r did not come that way).
func badFraming(r *http.Request) string {
	if r.ProtoMajor != 1 {
		return ""
	}
	fc, _ := r.Context().Value(framingKey{}).(*framingConn)
	if fc == nil {
		return ""
	}
	return fc.current()
}

type framingState uint8

const (
	fsHead      framingState = iota // request line and header lines
	fsBody                          // remain bytes of a Content-Length body
	fsChunkSize                     // a chunk-size line
	fsChunkData                     // remain bytes of chunk data
	fsChunkCRLF                     // the CRLF after chunk data
	fsTrailer                       // trailer lines until an empty one
	fsStopped                       // nothing more is followed
)

// framingMaxLine bounds the line a framingParser keeps: net/http refuses
// longer heads anyway (MaxHeaderBytes).
const framingMaxLine = 1 << 20

// framingParser follows HTTP/1.x request framing as net/http does, and
// stops following (for good) at anything it does not expect: net/http
// then refuses the request itself or, for an upgrade, stops speaking HTTP.
//
// It allocates nothing for an ordinary request: of a head it looks only at
// the request line and at the headers that frame the body (their names are
// recognised by their first byte before they are compared), and keeps only
// the first Content-Length value, for the ones after it to be compared with.
type framingParser struct {
	state  framingState
	line   []byte // the current, incomplete line
	lines  int    // lines of the current head, request line included
	remain int64

	// The current head.
	http10, options, upgrade bool
	clN, teN                 int    // Content-Length and Transfer-Encoding headers
	cl                       []byte // the first Content-Length value
	clDiffer                 bool   // a later Content-Length value differs from it
	teChunked                bool   // the first Transfer-Encoding value is "chunked"

	heads int    // request heads completed and handed to the Server
	bad   int    // number of the first head to refuse, 0 none
	why   string // why it is refused
}

func (p *framingParser) feed(b []byte) {
	for len(b) > 0 && p.state != fsStopped {
		switch p.state {
		case fsBody, fsChunkData:
			n := int64(len(b))
			if n > p.remain {
				n = p.remain
			}
			b = b[n:]
			p.remain -= n
			if p.remain == 0 {
				if p.state == fsBody {
					p.state = fsHead
				} else {
					p.state = fsChunkCRLF
				}
			}
			continue
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			if len(p.line)+len(b) > framingMaxLine {
				p.stop()
				return
			}
			p.line = append(p.line, b...)
			return
		}
		var line []byte
		if len(p.line) > 0 {
			p.line = append(p.line, b[:i]...)
			line = p.line
		} else {
			line = b[:i]
		}
		b = b[i+1:]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		p.endLine(line)
		p.line = p.line[:0]
	}
}

func (p *framingParser) stop() {
	p.state = fsStopped
	p.line = nil
}

// endLine handles one complete line (without its line ending).
func (p *framingParser) endLine(line []byte) {
	switch p.state {
	case fsHead:
		p.headLine(line)
	case fsChunkSize:
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		n, err := strconv.ParseUint(string(bytes.TrimRight(line, " \t")), 16, 62)
		switch {
		case err != nil:
			p.stop()
		case n == 0:
			p.state = fsTrailer
		default:
			p.state, p.remain = fsChunkData, int64(n)
		}
	case fsChunkCRLF:
		if len(line) != 0 {
			p.stop()
			return
		}
		p.state = fsChunkSize
	case fsTrailer:
		if len(line) == 0 {
			p.state = fsHead
		}
	}
}

func (p *framingParser) headLine(line []byte) {
	if p.lines == 0 {
		method, target, proto, ok := requestLine(line)
		if !ok || !bytes.HasPrefix(proto, []byte("HTTP/1.")) {
			p.stop() // not HTTP/1.x: net/http refuses it, or it is HTTP/2's preface
			return
		}
		p.http10 = string(proto) == "HTTP/1.0"
		p.options = string(method) == "OPTIONS" && string(target) == "*"
		p.upgrade = false
		p.clN, p.teN, p.clDiffer, p.teChunked = 0, 0, false, false
		p.lines = 1
		return
	}
	if len(line) > 0 {
		p.lines++
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			p.stop()
			return
		}
		// Only names starting with these bytes can match below (no other
		// byte folds to c, t or u).
		switch line[0] | 0x20 {
		case 'c', 't', 'u':
		default:
			return
		}
		name := line[:i]
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			value := bytes.TrimSpace(line[i+1:])
			if p.clN == 0 {
				p.cl = append(p.cl[:0], value...)
			} else if !bytes.Equal(value, p.cl) {
				p.clDiffer = true
			}
			p.clN++
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			if p.teN == 0 {
				p.teChunked = bytes.EqualFold(bytes.TrimSpace(line[i+1:]), []byte("chunked"))
			}
			p.teN++
		case bytes.EqualFold(name, []byte("Upgrade")):
			p.upgrade = true
		}
		return
	}
	// The end of the head.
	p.lines = 0
	if !p.options { // net/http answers "OPTIONS *" without the Server
		p.heads++
	}
	switch {
	case p.teN > 0 && p.clN > 0:
		p.refuse("both Content-Length and Transfer-Encoding")
		return
	case p.teN > 0 && p.http10:
		p.refuse("Transfer-Encoding in an HTTP/1.0 request")
		return
	case p.upgrade:
		p.stop() // the connection may stop speaking HTTP
		return
	case p.teN > 0:
		if p.teN != 1 || !p.teChunked {
			p.stop() // net/http answers 501 and closes
			return
		}
		p.state = fsChunkSize
	case p.clN > 0:
		n, err := strconv.ParseInt(string(p.cl), 10, 64)
		if err != nil || n < 0 || p.clDiffer {
			p.stop() // net/http answers 400 and closes
			return
		}
		if n > 0 {
			p.state, p.remain = fsBody, n
		}
	}
}

// requestLine splits a request line into its three fields, as
// strings.Fields would, reporting false when it does not have exactly
// three.
func requestLine(line []byte) (method, target, proto []byte, ok bool) {
	var f [3][]byte
	n := 0
	for i := 0; i < len(line); {
		c := line[i]
		if c >= utf8.RuneSelf { // Unicode spaces: leave it to strings.Fields
			fs := strings.Fields(string(line))
			if len(fs) != 3 {
				return nil, nil, nil, false
			}
			return []byte(fs[0]), []byte(fs[1]), []byte(fs[2]), true
		}
		if asciiSpace(c) {
			i++
			continue
		}
		j := i
		for j < len(line) && line[j] < utf8.RuneSelf && !asciiSpace(line[j]) {
			j++
		}
		if j < len(line) && line[j] >= utf8.RuneSelf {
			i = j // a field running into a non-ASCII byte: see above
			continue
		}
		if n == 3 {
			return nil, nil, nil, false
		}
		f[n] = line[i:j]
		n++
		i = j
	}
	return f[0], f[1], f[2], n == 3
}

// asciiSpace reports whether c is white space to unicode.IsSpace.
func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

// refuse marks the current head as the one to refuse; the connection is
// closed after its response, so nothing after it is followed.
func (p *framingParser) refuse(why string) {
	if p.bad == 0 && !p.options {
		p.bad, p.why = p.heads, why
	}
	p.stop()
}
