package cli_test

import (
	"strings"
	"testing"

	"github.com/gochannels/channels/cli"
	"github.com/google/go-cmp/cmp"
)

// The endpoint rules of interface-server.md §2.
func TestD46_BuildEndpoints(t *testing.T) {
	none := -1
	for _, tc := range []struct {
		name string
		o    cli.EndpointOptions
		want []cli.Endpoint
	}{
		{"nothing", cli.EndpointOptions{FD: none}, []cli.Endpoint{"tcp:port=8000:interface=127.0.0.1"}},
		{"bind only", cli.EndpointOptions{Bind: "10.0.0.1", FD: none}, []cli.Endpoint{"tcp:port=8000:interface=10.0.0.1"}},
		{"port only", cli.EndpointOptions{Port: 8080, FD: none}, []cli.Endpoint{"tcp:port=8080:interface=127.0.0.1"}},
		{"port and unix", cli.EndpointOptions{Port: 8080, UnixSocket: "/tmp/s.sock", FD: none}, []cli.Endpoint{"tcp:port=8080:interface=127.0.0.1", "unix:/tmp/s.sock"}},
		{"unix and fd, no tcp", cli.EndpointOptions{UnixSocket: "/tmp/s.sock", FD: 5}, []cli.Endpoint{"fd:fileno=5", "unix:/tmp/s.sock"}},
		{"endpoint only", cli.EndpointOptions{FD: none, Endpoints: []cli.Endpoint{"unix:/a.sock"}}, []cli.Endpoint{"unix:/a.sock"}},
		{"port and endpoint", cli.EndpointOptions{Port: 9000, FD: none, Endpoints: []cli.Endpoint{"unix:/a.sock"}}, []cli.Endpoint{"tcp:port=9000:interface=127.0.0.1", "unix:/a.sock"}},
		{"duplicates kept", cli.EndpointOptions{Port: 8000, FD: none, Endpoints: []cli.Endpoint{"tcp:port=8000:interface=127.0.0.1"}}, []cli.Endpoint{"tcp:port=8000:interface=127.0.0.1", "tcp:port=8000:interface=127.0.0.1"}},
		{"ipv6", cli.EndpointOptions{Bind: "[::1]", Port: 8000, FD: none}, []cli.Endpoint{`tcp:port=8000:interface=\:\:1`}},
	} {
		if diff := cmp.Diff(tc.want, cli.BuildEndpoints(tc.o)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestEndpointListen(t *testing.T) {
	for _, e := range []cli.Endpoint{"tcp:port=0:interface=127.0.0.1", `tcp:port=0:interface=\:\:1`, cli.Endpoint("unix:" + t.TempDir() + "/s.sock")} {
		l, err := e.Listen()
		if err != nil {
			if strings.Contains(string(e), "::1") {
				continue // no IPv6 on this machine
			}
			t.Fatalf("%s: %v", e, err)
		}
		l.Close()
	}
	for _, e := range []cli.Endpoint{"tcp:interface=127.0.0.1", "tcp:port=x", "ssl:port=0", "bogus:1", "fd:fileno=x", "unix:"} {
		if l, err := e.Listen(); err == nil {
			l.Close()
			t.Errorf("%s: listened", e)
		}
	}
}
