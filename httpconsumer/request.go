package httpconsumer

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/normal"
)

// errBadRequest marks a message that cannot be decoded into a request.
var errBadRequest = errors.New("httpconsumer: undecodable request")

// Body outcomes that are answered by the consumer, not the handler.
var (
	errAborted     = errors.New("httpconsumer: request aborted by the client")
	errBodyTimeout = errors.New("httpconsumer: request body timed out")
	errTooLarge    = errors.New("httpconsumer: request body too large")
	errBadChunk    = errors.New("httpconsumer: bad request body chunk")
)

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
}

// decoded is an "http.request" message checked and converted to Go values.
type decoded struct {
	method      string
	path        string // full path, root path included
	pathInfo    string // path with the root path removed
	rawQuery    string
	rootPath    string
	scheme      string
	proto       string
	major       int
	minor       int
	header      http.Header
	host        string
	remoteAddr  string
	serverName  string
	serverPort  string
	localAddr   net.Addr
	body        []byte
	bodyChannel string
}

// decode checks and converts the keys of an "http.request" message
// (messages.md §3.1). Errors wrap errBadRequest.
func decode(c channels.Content) (d decoded, err error) {
	method, ok := c["method"].(string)
	if !ok || method == "" {
		return decoded{}, badRequest("method must be non-empty text, got %T", c["method"])
	}
	d.method = strings.ToUpper(method)
	if !validToken(d.method) {
		return decoded{}, badRequest("invalid method %q", method)
	}

	path, ok := c["path"].(string)
	if !ok || path == "" {
		return decoded{}, badRequest("path must be non-empty text, got %T", c["path"])
	}
	if !utf8.ValidString(path) {
		return decoded{}, badRequest("path %q is not valid UTF-8", path)
	}
	d.path = path

	switch v := c["root_path"].(type) {
	case nil:
	case string:
		if !utf8.ValidString(v) {
			return decoded{}, badRequest("root_path %q is not valid UTF-8", v)
		}
		d.rootPath = v
	default:
		return decoded{}, badRequest("root_path must be text, got %T", v)
	}
	d.pathInfo = path
	if d.rootPath != "" && strings.HasPrefix(path, d.rootPath) {
		d.pathInfo = path[len(d.rootPath):]
		if d.pathInfo == "" {
			d.pathInfo = "/"
		}
	}

	switch v := c["query_string"].(type) {
	case nil:
	case []byte:
		d.rawQuery = string(v)
	case string:
		d.rawQuery = v
	default:
		return decoded{}, badRequest("query_string must be bytes, got %T", v)
	}
	if strings.ContainsAny(d.rawQuery, "#\x00\r\n") {
		return decoded{}, badRequest("query_string %q holds a forbidden character", d.rawQuery)
	}

	if d.proto, d.major, d.minor, err = decodeVersion(c["http_version"]); err != nil {
		return decoded{}, err
	}

	switch v := c["scheme"].(type) {
	case nil:
		d.scheme = "http"
	case string:
		d.scheme = strings.ToLower(v)
		if d.scheme == "" {
			d.scheme = "http"
		}
	default:
		return decoded{}, badRequest("scheme must be text, got %T", v)
	}

	if d.header, err = decodeHeaders(c["headers"]); err != nil {
		return decoded{}, err
	}

	remoteHost, remotePort, ok, err := decodeAddr("client", c["client"])
	if err != nil {
		return decoded{}, err
	}
	if ok {
		d.remoteAddr = net.JoinHostPort(remoteHost, strconv.FormatInt(remotePort, 10))
	}
	serverHost, serverPort, hasServer, err := decodeAddr("server", c["server"])
	if err != nil {
		return decoded{}, err
	}
	if hasServer {
		d.serverName = serverHost
		d.serverPort = strconv.FormatInt(serverPort, 10)
		if ip := net.ParseIP(serverHost); ip != nil && serverPort <= math.MaxUint16 {
			d.localAddr = &net.TCPAddr{IP: ip, Port: int(serverPort)}
		}
	}

	switch hosts := d.header["Host"]; len(hosts) {
	case 0:
		switch {
		case !hasServer:
		case serverPort != defaultPort(d.scheme):
			d.host = net.JoinHostPort(serverHost, d.serverPort)
		case strings.Contains(serverHost, ":"):
			d.host = "[" + serverHost + "]"
		default:
			d.host = serverHost
		}
	case 1:
		d.host = hosts[0]
		delete(d.header, "Host")
	default:
		return decoded{}, badRequest("%d Host headers", len(hosts))
	}

	switch v := c["body"].(type) {
	case nil:
	case []byte:
		d.body = v
	default:
		return decoded{}, badRequest("body must be bytes, got %T", v)
	}

	switch v := c["body_channel"].(type) {
	case nil:
	case string:
		if err := channels.ValidateChannelName(v); err != nil {
			return decoded{}, badRequest("body_channel: %v", err)
		}
		d.bodyChannel = v
	default:
		return decoded{}, badRequest("body_channel must be text, got %T", v)
	}
	return d, nil
}

func defaultPort(scheme string) int64 {
	if scheme == "https" {
		return 443
	}
	return 80
}

// decodeVersion turns "http_version" ("1.0", "1.1", "2") into net/http's
// Proto, ProtoMajor and ProtoMinor.
func decodeVersion(v any) (string, int, int, error) {
	if v == nil {
		return "HTTP/1.1", 1, 1, nil
	}
	s, ok := v.(string)
	if !ok {
		return "", 0, 0, badRequest("http_version must be text, got %T", v)
	}
	majorText, minorText, hasMinor := strings.Cut(s, ".")
	major, err1 := strconv.Atoi(majorText)
	minor, err2 := 0, error(nil)
	if hasMinor {
		minor, err2 = strconv.Atoi(minorText)
	}
	if err1 != nil || err2 != nil || major < 0 || major > 9 || minor < 0 || minor > 9 || len(majorText) != 1 || (hasMinor && len(minorText) != 1) {
		return "", 0, 0, badRequest("http_version %q", s)
	}
	return fmt.Sprintf("HTTP/%d.%d", major, minor), major, minor, nil
}

// decodeHeaders converts "headers": a list of [name, value] pairs, or the
// legacy map of name to value.
func decodeHeaders(v any) (http.Header, error) {
	switch v := v.(type) {
	case nil:
		return make(http.Header), nil
	case []any:
		hb := newHeaderBuilder(len(v))
		for i, pair := range v {
			p, ok := pair.([]any)
			if !ok || len(p) != 2 {
				return nil, badRequest("headers[%d] must be a [name, value] pair, got %T", i, pair)
			}
			if err := hb.add(p[0], p[1]); err != nil {
				return nil, fmt.Errorf("%w (headers[%d])", err, i)
			}
		}
		return hb.h, nil
	case map[string]any:
		names := make([]string, 0, len(v))
		for name := range v {
			names = append(names, name)
		}
		slices.Sort(names)
		hb := newHeaderBuilder(len(v))
		for _, name := range names {
			if err := hb.add(name, v[name]); err != nil {
				return nil, err
			}
		}
		return hb.h, nil
	}
	return nil, badRequest("headers must be a list of [name, value] pairs, got %T", v)
}

// headerBuilder fills an http.Header, taking the value slices of single
// headers from one shared array as net/textproto's reader does.
type headerBuilder struct {
	h    http.Header
	strs []string
}

func newHeaderBuilder(n int) headerBuilder {
	return headerBuilder{h: make(http.Header, n), strs: make([]string, n)}
}

func (hb *headerBuilder) add(rawName, rawValue any) error {
	var key string
	switch n := rawName.(type) {
	case []byte:
		if !validToken(n) {
			return badRequest("invalid header name %q", n)
		}
		key = canonicalName(n)
	case string:
		if !validToken(n) {
			return badRequest("invalid header name %q", n)
		}
		key = textproto.CanonicalMIMEHeaderKey(n)
	default:
		return badRequest("header name must be bytes, got %T", rawName)
	}
	var value string
	switch val := rawValue.(type) {
	case []byte:
		if !validValue(val) {
			return badRequest("invalid value for header %q", key)
		}
		value = latin1(val)
	case string:
		if !validValue(val) {
			return badRequest("invalid value for header %q", key)
		}
		value = val
	default:
		return badRequest("value of header %q must be bytes, got %T", key, rawValue)
	}
	if vs := hb.h[key]; vs != nil || len(hb.strs) == 0 {
		hb.h[key] = append(vs, value)
		return nil
	}
	hb.strs[0] = value
	hb.h[key] = hb.strs[:1:1]
	hb.strs = hb.strs[1:]
	return nil
}

// commonHeaders maps the lower-case names interface servers send to their
// canonical form, so that the usual headers cost no allocation.
var commonHeaders = func() map[string]string {
	m := make(map[string]string)
	for _, name := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Encoding", "Content-Length", "Content-Type",
		"Cookie", "Dnt", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "Origin",
		"Pragma", "Priority", "Range", "Referer", "Sec-Ch-Ua", "Sec-Ch-Ua-Mobile",
		"Sec-Ch-Ua-Platform", "Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site",
		"Sec-Fetch-User", "Sec-Websocket-Extensions", "Sec-Websocket-Key",
		"Sec-Websocket-Protocol", "Sec-Websocket-Version", "Te", "Upgrade",
		"Upgrade-Insecure-Requests", "User-Agent", "X-Csrftoken", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip", "X-Requested-With",
	} {
		m[strings.ToLower(name)] = name
	}
	return m
}()

// canonicalName is textproto.CanonicalMIMEHeaderKey for a name in bytes.
func canonicalName(b []byte) string {
	if s, ok := commonHeaders[string(b)]; ok {
		return s
	}
	return textproto.CanonicalMIMEHeaderKey(string(b))
}

// latin1 decodes ISO-8859-1 bytes: each byte is the rune of the same number.
func latin1(b []byte) string {
	for i, c := range b {
		if c >= utf8.RuneSelf {
			var sb strings.Builder
			sb.Grow(len(b) + len(b) - i)
			sb.Write(b[:i])
			for _, c := range b[i:] {
				sb.WriteRune(rune(c))
			}
			return sb.String()
		}
	}
	return string(b)
}

// validToken reports whether s is an RFC 9110 token (method, header name).
func validToken[T string | []byte](s T) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validValue reports whether a header value holds no control characters
// other than horizontal tab.
func validValue[T string | []byte](v T) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// decodeAddr decodes "client" or "server": [host text, port int] or null.
func decodeAddr(key string, v any) (host string, port int64, ok bool, err error) {
	if v == nil {
		return "", 0, false, nil
	}
	l, isList := v.([]any)
	if !isList || len(l) != 2 {
		return "", 0, false, badRequest("%s must be [host, port] or null, got %T", key, v)
	}
	host, isText := l[0].(string)
	if !isText {
		return "", 0, false, badRequest("%s host must be text, got %T", key, l[0])
	}
	port, isInt := normal.ToInt(l[1])
	if !isInt || port < 0 {
		return "", 0, false, badRequest("%s port must be a non-negative integer, got %v", key, l[1])
	}
	return host, port, true, nil
}

// request builds the *http.Request the handler sees, with the complete body.
func (d *decoded) request(ctx context.Context) *http.Request {
	requestURI := (&url.URL{Path: d.path}).EscapedPath()
	if d.rawQuery != "" {
		requestURI += "?" + d.rawQuery
	}
	r := &http.Request{
		Method:        d.method,
		URL:           &url.URL{Path: d.pathInfo, RawQuery: d.rawQuery},
		Proto:         d.proto,
		ProtoMajor:    d.major,
		ProtoMinor:    d.minor,
		Header:        d.header,
		Body:          http.NoBody,
		ContentLength: int64(len(d.body)),
		Host:          d.host,
		RemoteAddr:    d.remoteAddr,
		RequestURI:    requestURI,
	}
	if len(d.body) > 0 {
		r.Body = io.NopCloser(bytes.NewReader(d.body))
	}
	if d.scheme == "https" {
		r.TLS = &tls.ConnectionState{HandshakeComplete: true}
	}
	return r.WithContext(ctx)
}

// readBody returns the whole request body: inline, followed by the chunks
// on bodyChannel when there is one (messages.md §3.2). Errors: errAborted
// (the client went away), errBodyTimeout, errTooLarge, errBadChunk, or
// ctx's error and layer errors.
func (c *Consumer) readBody(ctx context.Context, l channels.Layer, inline []byte, bodyChannel string) ([]byte, error) {
	limit := c.maxBodySize()
	if limit > 0 && int64(len(inline)) > limit {
		return nil, errTooLarge
	}
	if bodyChannel == "" {
		return inline, nil
	}
	rctx := ctx
	if timeout := c.bodyTimeout(); timeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	body := slices.Clip(inline)
	for {
		_, chunk, err := l.Receive(rctx, bodyChannel)
		if err != nil {
			if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				return nil, errBodyTimeout
			}
			return nil, fmt.Errorf("httpconsumer: receive request body on %q: %w", bodyChannel, err)
		}
		if chunk.Bool("closed") {
			return nil, errAborted
		}
		switch v := chunk["content"].(type) {
		case nil:
		case []byte:
			if limit > 0 && int64(len(body))+int64(len(v)) > limit {
				return nil, errTooLarge
			}
			body = append(body, v...)
		default:
			return nil, fmt.Errorf("%w: content must be bytes, got %T", errBadChunk, v)
		}
		if !chunk.Bool("more_content") {
			return body, nil
		}
	}
}
