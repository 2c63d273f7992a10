package redislayer_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
)

// startSentinel starts a Redis Sentinel watching master as "mymaster" and
// returns its address. It is stopped when the test ends.
func startSentinel(t *testing.T, master *testenv.RedisServer) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Missing(t, "redis-server is not on PATH (apt-get install redis-server)")
	}
	dir := t.TempDir()
	port := testenv.FreePort(t)
	conf := filepath.Join(dir, "sentinel.conf")
	if err := os.WriteFile(conf, fmt.Appendf(nil,
		"port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %d 1\nsentinel down-after-milliseconds mymaster 5000\n",
		port, dir, master.Port), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, conf, "--sentinel")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sentinel: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(10 * time.Second); ; {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel on %s did not start", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The layer finds its master through Sentinel and passes the conformance
// suite there.
func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	master := testenv.StartRedis(t)
	sentinel := startSentinel(t, master)
	conformance(t, redislayer.Config{Sentinels: []string{sentinel}, MasterName: "mymaster"})
}
