package cli

import (
	"bytes"
	"flag"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/gctune"
)

// --gc-floor sets the garbage collector's percentage from the live heap
// while the command runs, and puts it back when it ends; 0 leaves Go's
// default.
func TestGCFloorFlag(t *testing.T) {
	t.Setenv("GOGC", "") // a GOGC in the environment would win
	base := gctune.CurrentPercent()
	run := func(args ...string) (during int, logs string) {
		t.Helper()
		fs := flag.NewFlagSet("runserver", flag.ContinueOnError)
		o := addObserveFlags(fs)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		stop := o.tuneGC(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
		defer stop()
		deadline := time.Now().Add(5 * time.Second)
		for during = gctune.CurrentPercent(); during == base && o.gcFloorMiB > 0 && time.Now().Before(deadline); during = gctune.CurrentPercent() {
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
		return during, buf.String()
	}
	if p, logs := run(); p <= base || !strings.Contains(logs, "gc_floor_mib=32") {
		t.Errorf("default --gc-floor: GC percentage %d (base %d), logs %q; want a higher percentage, logged", p, base, logs)
	}
	if p := gctune.CurrentPercent(); p != base {
		t.Errorf("GC percentage %d after the command; want %d back", p, base)
	}
	if p, _ := run("--gc-floor", "0"); p != base {
		t.Errorf("--gc-floor 0: GC percentage %d; want Go's %d", p, base)
	}
}
