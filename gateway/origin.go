package gateway

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// originPolicy decides which Origin headers may open a WebSocket.
type originPolicy struct {
	any      bool // "*"
	null     bool // "null"
	missing  bool // AllowMissingOrigin
	patterns []originPattern
}

type originPattern struct {
	scheme string // "" = any
	host   string // lower-case; with wildcard, the suffix including the leading dot
	suffix bool   // "*.example.com"
	port   int    // 0 = any
}

func newOriginPolicy(list []string) (*originPolicy, error) {
	p := &originPolicy{}
	for _, raw := range list {
		s := strings.ToLower(strings.TrimSpace(raw))
		switch s {
		case "*":
			p.any = true
			continue
		case "null":
			p.null = true
			continue
		case "":
			return nil, fmt.Errorf("gateway: empty AllowedOrigins pattern")
		}
		var op originPattern
		if i := strings.Index(s, "://"); i >= 0 {
			op.scheme, s = s[:i], s[i+3:]
			if op.scheme == "" {
				return nil, fmt.Errorf("gateway: AllowedOrigins pattern %q has an empty scheme", raw)
			}
		}
		host := s
		if h, port, err := net.SplitHostPort(s); err == nil {
			n, err := strconv.Atoi(port)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("gateway: AllowedOrigins pattern %q has an invalid port", raw)
			}
			host, op.port = h, n
		}
		host = strings.Trim(host, "[]")
		if strings.HasPrefix(host, "*.") {
			op.suffix = true
			host = host[1:]
		}
		if host == "" || host == "." || strings.ContainsAny(host, "*/?#@ ") {
			return nil, fmt.Errorf("gateway: AllowedOrigins pattern %q: want [scheme://]host[:port] where host may start with \"*.\"", raw)
		}
		op.host = host
		p.patterns = append(p.patterns, op)
	}
	return p, nil
}

// allowed reports whether a handshake with r's Origin header may proceed,
// and why not. scheme is the request's scheme, "http" or "https" (from TLS,
// or a trusted proxy's X-Forwarded-Proto).
func (p *originPolicy) allowed(r *http.Request, scheme string) (bool, string) {
	origins := r.Header.Values("Origin")
	if len(origins) == 0 {
		// Browsers always send Origin. Sec-WebSocket-Origin (the header
		// of pre-standard drafts) does not stand in for it.
		if p.any || p.missing {
			return true, ""
		}
		if len(r.Header.Values("Sec-WebSocket-Origin")) > 0 {
			return false, "no Origin header (Sec-WebSocket-Origin is not an origin); set AllowMissingOrigin to accept clients that send none"
		}
		return false, "no Origin header; set AllowMissingOrigin to accept clients that send none"
	}
	if len(origins) > 1 {
		return false, "several Origin headers"
	}
	origin := strings.TrimSpace(origins[0])
	if p.any {
		return true, ""
	}
	if strings.EqualFold(origin, "null") {
		if p.null {
			return true, ""
		}
		return false, `Origin "null" is not allowed (list "null" in AllowedOrigins to allow it)`
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme == "" || u.Hostname() == "" {
		return false, "Origin is not a URL with a host"
	}
	oScheme := strings.ToLower(u.Scheme)
	oHost := strings.ToLower(u.Hostname())
	oPort := effectivePort(oScheme, u.Port())
	if len(p.patterns) == 0 {
		// Same scheme and host as the request. A Host without a port
		// (as behind most proxies) accepts the origin on any port.
		host, port := r.Host, ""
		if h, pt, err := net.SplitHostPort(r.Host); err == nil {
			host, port = h, pt
		}
		if !strings.EqualFold(strings.Trim(host, "[]"), oHost) {
			return false, "Origin is not the request's host and AllowedOrigins is empty"
		}
		if httpScheme(oScheme) != scheme {
			return false, "Origin's scheme is not the request's scheme (" + scheme + "; behind a TLS-terminating proxy, list it in TrustedProxies so that its X-Forwarded-Proto counts)"
		}
		if port != "" && effectivePort(scheme, port) != oPort {
			return false, "Origin's port is not the request's port"
		}
		return true, ""
	}
	for _, op := range p.patterns {
		if op.scheme != "" && op.scheme != oScheme {
			continue
		}
		if op.port != 0 && op.port != oPort {
			continue
		}
		if op.suffix {
			if len(oHost) > len(op.host) && strings.HasSuffix(oHost, op.host) {
				return true, ""
			}
			continue
		}
		if oHost == op.host {
			return true, ""
		}
	}
	return false, "Origin does not match AllowedOrigins"
}

// httpScheme maps an origin's scheme to the request scheme it matches:
// "ws" to "http" and "wss" to "https"; others are returned as they are.
func httpScheme(s string) string {
	switch s {
	case "ws":
		return "http"
	case "wss":
		return "https"
	}
	return s
}

func effectivePort(scheme, port string) int {
	if port != "" {
		n, _ := strconv.Atoi(port)
		return n
	}
	switch scheme {
	case "https", "wss":
		return 443
	}
	return 80
}
