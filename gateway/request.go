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
	peer, peerOK := parseAddrPort(r.RemoteAddr)
	if peerOK {
		ri.client = []any{peer.Addr().Unmap().String(), int64(peer.Port())}
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ta, ok := la.(*net.TCPAddr); ok {
			ip, _ := netip.AddrFromSlice(ta.IP)
			ri.server = []any{ip.Unmap().String(), int64(ta.Port)}
		}
	}
	if peerOK && s.trusted(peer.Addr()) {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			ri.client = forwardedClient(xff[0], r.Header.Get("X-Forwarded-Port"))
		}
		switch proto := strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto"))); proto {
		case "http", "https":
			ri.scheme = proto
		}
	}
	if ri.client != nil {
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
func messageHeaders(r *http.Request) []any {
	names := make([]string, 0, len(r.Header))
	n := 1
	for k, vs := range r.Header {
		if strings.IndexByte(k, '_') >= 0 || strings.EqualFold(k, "Daphne-Root-Path") {
			continue
		}
		names = append(names, k)
		n += len(vs)
	}
	slices.Sort(names)
	out := make([]any, 0, n)
	if r.Host != "" {
		out = append(out, []any{[]byte("host"), []byte(r.Host)})
	}
	for _, k := range names {
		lk := []byte(strings.ToLower(k))
		for _, v := range r.Header[k] {
			out = append(out, []any{lk, []byte(v)})
		}
	}
	return out
}

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
