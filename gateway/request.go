package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gochannels/channels/internal/box"
)

// requestInfo is what the http.request and websocket.connect messages say
// about a request.
type requestInfo struct {
	path     string
	rawURI   string
	rootPath string
	query    []byte
	headers  []any
	client   []any // [host, port] or nil
	server   []any
	scheme   string // "http" or "https"
	clientS  string // "ip:port" for logs, "" when unknown
}

// pathError is the detail of a 400 for a request whose path is unusable.
type pathError string

// decodePath returns the %-decoded request path as UTF-8 text. The raw
// request target must be ASCII, and the decoded path valid UTF-8.
func decodePath(r *http.Request) (string, pathError) {
	raw := r.RequestURI
	for i := 0; i < len(raw); i++ {
		if raw[i] >= utf8.RuneSelf {
			return "", "Invalid characters in path"
		}
	}
	p := r.URL.Path // already %-decoded by net/http
	if p == "" {
		p = "/"
	}
	if !utf8.ValidString(p) {
		return "", "Invalid characters in path"
	}
	return p, ""
}

// info collects the request's details, honouring proxy headers only from
// trusted peers.
func (s *Server) info(r *http.Request, path string) requestInfo {
	ri := requestInfo{
		path:     path,
		rawURI:   r.RequestURI,
		rootPath: s.RootPath,
		query:    []byte(r.URL.RawQuery),
		scheme:   "http",
	}
	if r.TLS != nil {
		ri.scheme = "https"
	}
	if v := r.Header.Get("Daphne-Root-Path"); v != "" {
		if d, err := url.PathUnescape(v); err == nil {
			ri.rootPath = d
		} else {
			ri.rootPath = v
		}
	}
	ri.headers = messageHeaders(r)
	var (
		peer   netip.AddrPort
		peerOK bool
		ca     *connAddrs // the connection's, when they can be used
	)
	if fc := framingConnOf(r); fc != nil {
		ca = &fc.addrs
	}
	if ca != nil && ca.remote == r.RemoteAddr {
		peer, peerOK = ca.peer, ca.peerOK
	} else {
		peer, peerOK = parseAddrPort(r.RemoteAddr)
	}
	la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	ta, _ := la.(*net.TCPAddr)
	switch {
	case ca != nil && peerOK && peer == ca.peer && ta != nil && ta == ca.local:
		both := make([]any, 4) // one allocation for both lists
		copy(both, ca.client[:])
		copy(both[2:], ca.server[:])
		ri.client, ri.server = both[:2:2], both[2:]
	default:
		if peerOK {
			ri.client = []any{peer.Addr().Unmap().String(), int64(peer.Port())}
		}
		if ta != nil {
			ip, _ := netip.AddrFromSlice(ta.IP)
			ri.server = []any{ip.Unmap().String(), int64(ta.Port)}
		}
	}
	fromPeer := peerOK
	if peerOK && s.trusted(peer.Addr()) {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			ri.client = forwardedClient(xff[0], r.Header.Get("X-Forwarded-Port"))
			fromPeer = false
		}
		switch proto := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); proto {
		case "http", "https":
			ri.scheme = proto
		}
	}
	switch {
	case ri.client == nil:
	case fromPeer && !peer.Addr().Is4In6():
		ri.clientS = r.RemoteAddr // already "ip:port"
	default:
		ri.clientS = net.JoinHostPort(ri.client[0].(string), strconv.FormatInt(ri.client[1].(int64), 10))
	}
	return ri
}

func (s *Server) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func parseAddrPort(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	return ap, err == nil
}

// forwardedClient applies the proxy-header rules of Daphne 1.0 (interface
// server spec §5) to a trusted peer's X-Forwarded-For value: the last
// comma-separated element (the one the trusted proxy appended), split into
// host and port when it carries one (port 0 otherwise, and when the port is
// not a number), with X-Forwarded-Port replacing the port when it is an
// integer. Unlike Daphne, bare IPv6 addresses are not split at a colon.
func forwardedClient(xff, xfPort string) []any {
	if i := strings.LastIndexByte(xff, ','); i >= 0 {
		xff = xff[i+1:]
	}
	xff = strings.TrimSpace(xff)
	host, port := xff, int64(0)
	if _, err := netip.ParseAddr(strings.Trim(xff, "[]")); err == nil {
		host = strings.Trim(xff, "[]")
	} else if i := strings.LastIndexByte(xff, ':'); i >= 0 {
		host = strings.Trim(xff[:i], "[]")
		if p, err := strconv.ParseInt(xff[i+1:], 10, 64); err == nil && p >= 0 && p <= 65535 {
			port = p
		}
	}
	if xfPort != "" {
		if p, err := strconv.ParseInt(strings.TrimSpace(xfPort), 10, 64); err == nil && p >= 0 && p <= 65535 {
			port = p
		}
	}
	return []any{host, port}
}

// messageHeaders lists the request's headers as [name, value] byte pairs
// with lower-cased names: Host first, then the others sorted by name (Go's
// HTTP server does not keep the order between different names), the values
// of a repeated name in the order received. Names containing '_' are
// dropped (so that "X_Forwarded_For" cannot pose as "X-Forwarded-For" after
// a conversion to CGI-style names), and so is Daphne-Root-Path.
//
// The pairs share one backing array and the bytes one buffer; the names of
// common headers are shared, read-only values (see headerNames).
func messageHeaders(r *http.Request) []any {
	var small [16]string
	names := small[:0]
	n, size := 0, 0
	if r.Host != "" {
		n, size = 1, len(r.Host)
	}
	for k, vs := range r.Header {
		if strings.IndexByte(k, '_') >= 0 || strings.EqualFold(k, "Daphne-Root-Path") {
			continue
		}
		names = append(names, k)
		n += len(vs)
		_, common := headerNames[k]
		for _, v := range vs {
			size += len(v)
		}
		if !common {
			size += len(k)
		}
	}
	slices.Sort(names)
	all := make([]any, 3*n) // the list, then the pairs' elements
	out, pairs := all[:n:n], all[n:]
	buf := make([]byte, 0, size)
	// The pairs, and the values, are boxed from one slab each (package
	// box), not one allocation per header and per value.
	pairSlab, valSlab := make([][]any, n), make([][]byte, n)
	i := 0
	add := func(name any, v string) {
		start := len(buf)
		buf = append(buf, v...)
		valSlab[i] = buf[start:len(buf):len(buf)]
		p := pairs[2*i : 2*i+2 : 2*i+2]
		p[0], p[1] = name, box.Bytes(&valSlab[i])
		pairSlab[i] = p
		out[i] = box.List(&pairSlab[i])
		i++
	}
	if r.Host != "" {
		add(hostName, r.Host)
	}
	for _, k := range names {
		name, ok := headerNames[k]
		if !ok {
			start := len(buf)
			for j := 0; j < len(k); j++ {
				c := k[j]
				if 'A' <= c && c <= 'Z' {
					c += 'a' - 'A'
				}
				buf = append(buf, c)
			}
			name = buf[start:len(buf):len(buf)]
		}
		for _, v := range r.Header[k] {
			add(name, v)
		}
	}
	return out
}

// hostName and headerNames are the lower-cased names of common request
// headers, as the []byte values http.request and websocket.connect carry,
// boxed once and shared by every message: consumers read header names and
// must not modify them.
var (
	hostName    any = []byte("host")
	headerNames     = func() map[string]any {
		m := make(map[string]any)
		for _, k := range []string{
			"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
			"Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie",
			"If-Modified-Since", "If-None-Match", "Origin", "Pragma", "Referer",
			"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User",
			"Sec-Websocket-Extensions", "Sec-Websocket-Key", "Sec-Websocket-Protocol", "Sec-Websocket-Version",
			"Upgrade", "Upgrade-Insecure-Requests", "User-Agent", "X-Forwarded-For",
			"X-Forwarded-Port", "X-Forwarded-Proto", "X-Requested-With", "X-Real-Ip",
		} {
			m[k] = []byte(strings.ToLower(k))
		}
		return m
	}()
)

func isWebSocket(r *http.Request) bool {
	v := r.Header.Get("Upgrade")
	if i := strings.IndexByte(v, ','); i >= 0 {
		v = v[:i]
	}
	return strings.EqualFold(strings.TrimSpace(v), "websocket")
}

func httpVersion(r *http.Request) string {
	switch {
	case r.ProtoMajor == 2:
		return "2"
	case r.ProtoMajor == 1 && r.ProtoMinor == 0:
		return "1.0"
	case r.ProtoMajor == 3:
		return "3"
	}
	return "1.1"
}
