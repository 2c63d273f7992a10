package testenv

import (
	"bytes"
	"net/http"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Output collects what a process writes, safe to read while it runs.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

// String returns everything written so far.
func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// StartProcess runs bin with args in the directory dir ("" for the test's
// own) and stops it when the test ends: SIGTERM, then SIGKILL after 15 s.
// The test fails if the process does not exit cleanly on SIGTERM; its output
// is logged when the test has failed.
func StartProcess(t testing.TB, dir, name, bin string, args ...string) *Output {
	t.Helper()
	var out Output
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv: start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("%s exited with %v after SIGTERM:\n%s", name, err, out.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("%s did not stop within 15 s of SIGTERM:\n%s", name, out.String())
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out.String())
		}
	})
	return &out
}

// WaitHTTP waits up to d for url to answer GET with 200 OK, and fails the
// test otherwise, printing diag's text when diag is not nil.
func WaitHTTP(t testing.TB, url string, d time.Duration, diag func() string) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	var last any = "no answer"
	for start := time.Now(); time.Since(start) < d; time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get(url)
		if err != nil {
			last = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return
		}
		last = resp.Status
	}
	msg := ""
	if diag != nil {
		msg = "\n" + diag()
	}
	t.Fatalf("%s did not answer 200 OK within %v (last: %v)%s", url, d, last, msg)
}
