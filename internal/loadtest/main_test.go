package loadtest_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/gochannels/channels/internal/loadtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// startServer serves h on a free loopback port and returns its ws:// and
// http:// base URLs (no trailing slash).
func startServer(t *testing.T, h http.Handler) (ws, base string) {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http"), srv.URL
}

// startReference serves a Reference server and shuts it down after the test.
func startReference(t *testing.T, ref *loadtest.Reference) (ws, base string) {
	t.Helper()
	ws, base = startServer(t, ref)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := ref.Shutdown(ctx); err != nil {
			t.Errorf("Reference.Shutdown: %v", err)
		}
	})
	return ws, base
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// quick returns settings that keep a test short: a generous ceiling (the
// tests never rely on it unless they say so) and no progress lines.
func quick(url string) loadtest.Common {
	return loadtest.Common{URL: url, Duration: 30 * time.Second, Timeout: 5 * time.Second}
}
