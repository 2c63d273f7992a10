package loadtest

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func TestProgressLines(t *testing.T) {
	var out lockedBuffer
	calls := make(chan struct{}, 10)
	p := startProgress(&out, time.Millisecond, "echo", func() string {
		select {
		case calls <- struct{}{}:
		default:
		}
		return "round trips 5/10"
	})
	<-calls
	<-calls
	p.stop()
	p.stop() // idempotent
	out.mu.Lock()
	text := out.b.String()
	out.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) < 1 || !strings.HasPrefix(lines[0], "channels-load echo ") || !strings.HasSuffix(lines[0], "  round trips 5/10") {
		t.Errorf("progress output %q, want lines like \"channels-load echo <elapsed>  round trips 5/10\"", text)
	}
	// Silent without a writer, and stop still works.
	startProgress(nil, time.Millisecond, "echo", func() string { t.Error("line called without a writer"); return "" }).stop()
}
