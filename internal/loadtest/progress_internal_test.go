package loadtest

import (
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/testenv"
)

type lockedBuffer = testenv.Output

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
	text := out.String()
	lines := strings.Split(strings.TrimSpace(text), "\n")
	if len(lines) < 1 || !strings.HasPrefix(lines[0], "channels-load echo ") || !strings.HasSuffix(lines[0], "  round trips 5/10") {
		t.Errorf("progress output %q, want lines like \"channels-load echo <elapsed>  round trips 5/10\"", text)
	}
	// Silent without a writer, and stop still works.
	startProgress(nil, time.Millisecond, "echo", func() string { t.Error("line called without a writer"); return "" }).stop()
}
