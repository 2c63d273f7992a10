package gateway

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gochannels/channels"
)

// The X-Forwarded-For parser never panics and always yields a host and a
// port in range.
func FuzzForwardedClient(f *testing.F) {
	for _, s := range []string{"10.1.2.3", "10.1.2.3, 10.1.2.4", "10.1.2.3:5123", "[::1]:80", "2001:db8::1", ":", "a:b:c", ",,,", ""} {
		f.Add(s, "80")
	}
	f.Fuzz(func(t *testing.T, xff, port string) {
		c := forwardedClient(xff, port)
		if len(c) != 2 {
			t.Fatalf("client %v", c)
		}
		if _, ok := c[0].(string); !ok {
			t.Fatalf("host %T", c[0])
		}
		if p, ok := c[1].(int64); !ok || p < 0 || p > 65535 {
			t.Fatalf("port %v", c[1])
		}
	})
}

// Origin patterns and Origin headers never panic, and a wildcard never
// matches a host that does not end in "."+domain.
func FuzzOriginPolicy(f *testing.F) {
	for _, s := range [][2]string{
		{"*.example.com", "https://a.example.com"},
		{"https://x.org:8443", "https://x.org:8443"},
		{"null", "null"},
		{"[::1]:80", "http://[::1]:80"},
		{"*", "file://"},
	} {
		f.Add(s[0], s[1], "example.com")
	}
	f.Fuzz(func(t *testing.T, pattern, origin, host string) {
		p, err := newOriginPolicy([]string{pattern})
		if err != nil {
			return
		}
		r := &http.Request{Host: host, Header: http.Header{"Origin": {origin}}}
		ok, _ := p.allowed(r, "http")
		if ok && strings.HasPrefix(strings.TrimSpace(strings.ToLower(pattern)), "*.") && !p.any {
			h := strings.ToLower(origin)
			if !strings.Contains(h, strings.TrimPrefix(strings.ToLower(strings.TrimSpace(pattern)), "*")) {
				t.Fatalf("pattern %q allowed origin %q", pattern, origin)
			}
		}
	})
}

// Reply messages of any shape are either accepted with a consistent
// meaning or refused with a reason; never both text and bytes.
func FuzzParseReply(f *testing.F) {
	f.Add("hi", []byte(nil), int64(0), true, false)
	f.Add("", []byte("b"), int64(4000), false, true)
	f.Fuzz(func(t *testing.T, text string, bin []byte, code int64, accept, close bool) {
		m := channels.Content{"accept": accept}
		if text != "" {
			m["text"] = text
		}
		if bin != nil {
			m["bytes"] = bin
		}
		if code != 0 {
			m["close"] = code
		} else {
			m["close"] = close
		}
		a, bad := parseReply(m)
		if text != "" && bin != nil && bad == "" {
			t.Fatal("both text and bytes accepted")
		}
		if bad == "" && a.close && a.code == 0 {
			t.Fatal("close without a code")
		}
	})
}

// The framing follower never panics, and what it finds does not depend on
// how the bytes are cut into reads.
func FuzzFramingParser(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), 7)
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: 1\r\n\r\nPOST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 3)
	f.Fuzz(func(t *testing.T, data []byte, cut int) {
		var whole, pieces framingParser
		whole.feed(data)
		if cut <= 0 {
			cut = 1
		}
		for b := data; len(b) > 0; {
			n := min(cut, len(b))
			pieces.feed(b[:n])
			b = b[n:]
		}
		if whole.heads != pieces.heads || whole.bad != pieces.bad || whole.state != pieces.state {
			t.Fatalf("whole: %d heads, bad %d, state %d; in pieces of %d: %d heads, bad %d, state %d",
				whole.heads, whole.bad, whole.state, cut, pieces.heads, pieces.bad, pieces.state)
		}
	})
}

// The framing follower's cost per request head, for a browser-like GET:
// it should allocate nothing.
func BenchmarkFramingParser(b *testing.B) {
	head := []byte("GET /http/ HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nUser-Agent: Go-http-client/1.1\r\nAccept: */*\r\n" +
		"Accept-Encoding: gzip\r\nCookie: sessionid=abcdefghijklmnop; csrftoken=xyz\r\nAccept-Language: en\r\n\r\n")
	b.ReportAllocs()
	var p framingParser
	for b.Loop() {
		p.feed(head)
	}
	if p.state != fsHead || p.bad != 0 {
		b.Fatalf("state %d, bad %d", p.state, p.bad)
	}
}
