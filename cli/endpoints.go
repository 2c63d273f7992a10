package cli

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Endpoint is one place an interface server listens, in the
// Twisted-endpoint syntax Daphne used: "tcp:port=8000:interface=127.0.0.1",
// "unix:/run/app.sock", "fd:fileno=3", or
// "ssl:port=443:interface=0.0.0.0:privateKey=key.pem:certKey=cert.pem".
type Endpoint string

// EndpointOptions are the daphne options that produce endpoints.
type EndpointOptions struct {
	Bind       string     // -b/--bind
	Port       int        // -p/--port (0 = not given)
	UnixSocket string     // -u/--unix-socket
	FD         int        // --fd (-1 = not given)
	Endpoints  []Endpoint // -e/--endpoint, repeatable
}

// BuildEndpoints applies Daphne's rules: with no option at all, tcp on
// 127.0.0.1:8000; -b alone uses port 8000; -p alone uses host 127.0.0.1 (also
// combined with -u, --fd or -e); -u and --fd add their endpoints, and without
// -b/-p no TCP endpoint is added; -e strings are added verbatim. The result
// is sorted; duplicates are kept (the second listen then fails at run time,
// as with Daphne).
func BuildEndpoints(o EndpointOptions) []Endpoint {
	var out []Endpoint
	if o.Bind != "" || o.Port != 0 {
		host, port := o.Bind, o.Port
		if host == "" {
			host = "127.0.0.1"
		}
		if port == 0 {
			port = 8000
		}
		out = append(out, Endpoint(fmt.Sprintf("tcp:port=%d:interface=%s", port, escapeColons(strings.Trim(host, "[]")))))
	}
	if o.UnixSocket != "" {
		out = append(out, Endpoint("unix:"+o.UnixSocket))
	}
	if o.FD >= 0 {
		out = append(out, Endpoint(fmt.Sprintf("fd:fileno=%d", o.FD)))
	}
	out = append(out, o.Endpoints...)
	if len(out) == 0 && o.Bind == "" && o.Port == 0 && o.UnixSocket == "" && o.FD < 0 {
		out = append(out, "tcp:port=8000:interface=127.0.0.1")
	}
	slices.Sort(out)
	return out
}

func escapeColons(s string) string { return strings.ReplaceAll(s, ":", `\:`) }

// splitEndpoint splits on ':' not preceded by a backslash.
func splitEndpoint(s string) []string {
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s):
			cur.WriteByte(s[i+1])
			i++
		case s[i] == ':':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	return append(parts, cur.String())
}

// Listen opens the endpoint. TLS endpoints ("ssl:") load their key pair and
// return a TLS listener.
func (e Endpoint) Listen() (net.Listener, error) {
	parts := splitEndpoint(string(e))
	kind := parts[0]
	kv := map[string]string{}
	var positional []string
	for _, p := range parts[1:] {
		if k, v, ok := strings.Cut(p, "="); ok {
			kv[k] = v
		} else {
			positional = append(positional, p)
		}
	}
	port := kv["port"]
	if port == "" && len(positional) > 0 {
		port = positional[0]
	}
	switch kind {
	case "tcp", "ssl":
		if port == "" {
			return nil, fmt.Errorf("cli: endpoint %q: no port", e)
		}
		if _, err := strconv.Atoi(port); err != nil {
			return nil, fmt.Errorf("cli: endpoint %q: bad port %q", e, port)
		}
		l, err := net.Listen("tcp", net.JoinHostPort(kv["interface"], port))
		if err != nil {
			return nil, fmt.Errorf("cli: listen on %s: %w", e, err)
		}
		if kind == "tcp" {
			return l, nil
		}
		key, cert := kv["privateKey"], kv["certKey"]
		if cert == "" {
			cert = key
		}
		if key == "" {
			l.Close()
			return nil, fmt.Errorf("cli: endpoint %q: ssl needs privateKey=", e)
		}
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("cli: endpoint %q: %w", e, err)
		}
		return tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}), nil
	case "unix":
		path := strings.Join(parts[1:], ":")
		if path == "" {
			return nil, fmt.Errorf("cli: endpoint %q: no path", e)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			_ = os.Remove(path) // a stale socket from an earlier run
		}
		l, err := net.Listen("unix", path)
		if err != nil {
			return nil, fmt.Errorf("cli: listen on %s: %w", e, err)
		}
		return l, nil
	case "fd":
		n := kv["fileno"]
		if n == "" && len(positional) > 0 {
			n = positional[0]
		}
		fd, err := strconv.Atoi(n)
		if err != nil || fd < 0 {
			return nil, fmt.Errorf("cli: endpoint %q: bad fileno", e)
		}
		f := os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd))
		if f == nil {
			return nil, fmt.Errorf("cli: endpoint %q: no such file descriptor", e)
		}
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("cli: listen on %s: %w", e, err)
		}
		return l, nil
	}
	return nil, fmt.Errorf("cli: endpoint %q: unknown kind %q (tcp, ssl, unix or fd)", e, kind)
}

// ErrNoEndpoints is returned when an interface server has nowhere to listen.
var ErrNoEndpoints = errors.New("cli: no endpoints to listen on")
