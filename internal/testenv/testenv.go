// Package testenv gives tests the external services they need (Redis,
// PostgreSQL, Python), the same way everywhere: from REDIS_URL and
// DATABASE_URL when set, skipped with a clear message otherwise, and failed
// instead of skipped when CHANNELS_REQUIRE_SERVICES=1 (as in CI).
package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Required reports whether missing services fail tests instead of skipping
// them (CHANNELS_REQUIRE_SERVICES=1).
func Required() bool { return os.Getenv("CHANNELS_REQUIRE_SERVICES") == "1" }

// Missing skips the test, or fails it when services are required.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if Required() {
		t.Fatalf("%s (CHANNELS_REQUIRE_SERVICES=1, so this is a failure, not a skip)", msg)
	}
	t.Skip(msg)
}

// RedisURL returns REDIS_URL after checking that the server answers.
func RedisURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("REDIS_URL")
	if u == "" {
		Missing(t, "REDIS_URL is not set; set it (e.g. redis://127.0.0.1:6379/0) to run the Redis tests")
		return ""
	}
	addr := strings.TrimPrefix(strings.TrimPrefix(u, "redis://"), "rediss://")
	if i := strings.IndexAny(addr, "/?"); i >= 0 {
		addr = addr[:i]
	}
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		addr = addr[i+1:]
	}
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err != nil {
		Missing(t, "REDIS_URL=%s does not answer: %v", u, err)
	} else {
		c.Close()
	}
	return u
}

// DatabaseURL returns DATABASE_URL (a postgres:// URL) after checking that
// the server answers.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" || !(strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")) {
		Missing(t, "DATABASE_URL is not a postgres:// URL; set it (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable) to run the PostgreSQL tests")
		return ""
	}
	return u
}

// Prefix returns a random key prefix like "test-3f9a1c2e:", so that tests
// sharing a server never see each other's keys.
func Prefix(name string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%s:", name, hex.EncodeToString(b))
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RedisServer is a redis-server process started by a test.
type RedisServer struct {
	URL  string
	Port int
	cmd  *exec.Cmd
	dir  string
}

// StartRedis starts redis-server from PATH on a free port (no persistence)
// and stops it when the test ends. It skips, or fails when services are
// required, if redis-server is not installed.
func StartRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		Missing(t, "redis-server is not on PATH (apt-get install redis-server)")
		return nil
	}
	s := &RedisServer{dir: t.TempDir()}
	s.start(t, bin, FreePort(t))
	t.Cleanup(s.Stop)
	return s
}

func (s *RedisServer) start(t testing.TB, bin string, port int) {
	t.Helper()
	s.Port = port
	s.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	s.cmd = exec.Command(bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir)
	stdout, _ := s.cmd.StdoutPipe()
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("testenv: start redis-server: %v", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		closed := false
		for sc.Scan() {
			if !closed && strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				closed = true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		s.Stop()
		t.Fatalf("testenv: redis-server on port %d did not start", port)
	}
}

// Stop kills the server (only the process this test started).
func (s *RedisServer) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_, _ = s.cmd.Process.Wait()
		s.cmd = nil
	}
}

// Restart starts the server again on the same port, with no data.
func (s *RedisServer) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	bin, _ := exec.LookPath("redis-server")
	s.start(t, bin, s.Port)
}

// Python returns the path of a python3 that can import every module named,
// skipping (or failing) the test otherwise.
func Python(t testing.TB, modules ...string) string {
	t.Helper()
	for _, bin := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(bin)
		if err != nil {
			continue
		}
		args := []string{"-c", "import " + strings.Join(modules, ", ")}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = exec.CommandContext(ctx, path, args...).Run()
		cancel()
		if err == nil {
			return path
		}
	}
	Missing(t, "no python3 that can import %s (apt-get install python3-channels-redis)", strings.Join(modules, ", "))
	return ""
}

// ModuleRoot returns the repository's root directory (where go.mod is).
func ModuleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("testenv: go.mod not found above the working directory")
		}
		dir = parent
	}
}

// GoBuild builds the package at pkg (a path relative to the module root, like
// "./cmd/channels-gateway") into a temporary directory and returns the binary.
func GoBuild(t testing.TB, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = ModuleRoot(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: go build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// RedisCluster is a Redis Cluster of redis-server processes started by a
// test.
type RedisCluster struct {
	Nodes []*RedisServer // the masters, one per node
}

// URLs returns the nodes' redis:// URLs.
func (c *RedisCluster) URLs() []string {
	urls := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		urls[i] = n.URL
	}
	return urls
}

// StartRedisCluster starts n redis-server processes (no persistence) with
// cluster mode on, on free ports, joins them into a Redis Cluster of n
// masters without replicas (redis-cli --cluster create), waits until every
// node reports cluster_state:ok, and stops them all when the test ends.
// It skips the test when redis-server or redis-cli is not installed; when
// they are but the cluster cannot be formed, it skips, or fails when
// services are required.
func StartRedisCluster(t testing.TB, n int) *RedisCluster {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not on PATH (apt-get install redis-server): no Redis Cluster")
		return nil
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not on PATH (apt-get install redis-tools): no Redis Cluster")
		return nil
	}
	c := &RedisCluster{}
	addrs := make([]string, n)
	for i := range n {
		s := &RedisServer{dir: t.TempDir()}
		t.Cleanup(s.Stop)
		if err := s.startArgs(bin, FreePort(t), "--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes.conf"),
			"--cluster-node-timeout", "5000"); err != nil {
			Missing(t, "testenv: Redis Cluster node: %v", err)
			return nil
		}
		c.Nodes = append(c.Nodes, s)
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", s.Port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		Missing(t, "testenv: redis-cli --cluster create %s: %v\n%s", strings.Join(addrs, " "), err, out)
		return nil
	}
	for _, s := range c.Nodes {
		for {
			out, _ := exec.CommandContext(ctx, cli, "-p", fmt.Sprint(s.Port), "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				Missing(t, "testenv: Redis Cluster node 127.0.0.1:%d not ready: %s", s.Port, out)
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// startArgs starts redis-server on port with extra arguments and waits
// until it accepts connections.
func (s *RedisServer) startArgs(bin string, port int, extra ...string) error {
	s.Port = port
	s.URL = fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	args := append([]string{"--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", s.dir}, extra...)
	s.cmd = exec.Command(bin, args...)
	stdout, _ := s.cmd.StdoutPipe()
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		closed := false
		for sc.Scan() {
			if !closed && strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				closed = true
			}
		}
	}()
	select {
	case <-ready:
		return nil
	case <-time.After(10 * time.Second):
		s.Stop()
		return fmt.Errorf("redis-server on port %d did not start", port)
	}
}

// Chromium returns the path of a Chromium or Chrome binary for browser tests:
// CHANNELS_CHROMIUM when set, else the first of chromium, chromium-browser,
// chromium-headless-shell, google-chrome on PATH (Debian's package chromium
// installs /usr/bin/chromium).
func Chromium(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CHANNELS_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "chromium-headless-shell", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	Missing(t, "no Chromium found; install Debian's chromium package (or set CHANNELS_CHROMIUM) to run the browser tests")
	return ""
}
