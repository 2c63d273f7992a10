package layertest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/inmemory"
	"github.com/gochannels/channels/layertest"
)

// The suite must fail for layers that break the contract. Each broken layer
// below wraps the in-memory layer and breaks one promise; the suite runs
// against it in a child process (a failing suite fails its *testing.T, which
// cannot be caught in-process) and must report the case that covers the
// promise.
func TestSuiteReportsBrokenLayers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the suite in child processes")
	}
	for _, tc := range []struct {
		broken   string
		shards   int      // Options.NormalShards declared
		wantFail []string // subtests that must fail
	}{
		{"capacity", 0, []string{"L14_Capacity", "L18_CapacityRules"}},
		{"expiry", 0, []string{"L3_MessageExpiry", "L17_ExpiryEvictsFromGroups"}},
		{"cancel", 0, []string{"CancelledReceiveLosesNothing"}},
		{"reorder", 0, []string{"L1_SendReceiveFIFO", "FIFOPerChannel"}},
		{"groupexpiry", 0, []string{"L13_GroupExpiry"}},
		{"shared", 0, []string{"L15_SendCopiesContent"}},
		{"starve", 0, []string{"FairReceive"}},
		// A sharded layer still keeps '?' and '!' channels in order, and
		// a normal channel's capacity per store.
		{"reorder", 2, []string{"FIFOPerChannel"}},
		{"capacity", 2, []string{"L14_Capacity", "L18_CapacityRules"}},
	} {
		t.Run(fmt.Sprintf("%s/shards=%d", tc.broken, tc.shards), func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenLayer$", "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), "LAYERTEST_BROKEN="+tc.broken, fmt.Sprintf("LAYERTEST_SHARDS=%d", tc.shards))
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a layer that breaks %q:\n%s", tc.broken, tail(out))
			}
			for _, name := range tc.wantFail {
				if !strings.Contains(string(out), "--- FAIL: TestBrokenLayer/"+name+" ") {
					t.Errorf("the suite did not report %s for a layer that breaks %q:\n%s", name, tc.broken, tail(out))
				}
			}
		})
	}
	// And the unbroken layer passes in the same harness.
	cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenLayer$", "-test.count=1")
	cmd.Env = append(os.Environ(), "LAYERTEST_BROKEN=none")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("the harness fails even without a defect: %v\n%s", err, tail(out))
	}
}

func tail(b []byte) string {
	s := string(b)
	if len(s) > 4000 {
		s = "..." + s[len(s)-4000:]
	}
	return s
}

// TestBrokenLayer is the child process of TestSuiteReportsBrokenLayers.
func TestBrokenLayer(t *testing.T) {
	kind := os.Getenv("LAYERTEST_BROKEN")
	if kind == "" {
		t.Skip("run by TestSuiteReportsBrokenLayers")
	}
	shards, _ := strconv.Atoi(os.Getenv("LAYERTEST_SHARDS"))
	var clocks layertest.Clocks
	layertest.Run(t, func(t *testing.T, s layertest.Settings) channels.Layer {
		cfg := inmemory.Config{
			Expiry:          s.Expiry,
			GroupExpiry:     s.GroupExpiry,
			Capacity:        s.Capacity,
			ChannelCapacity: s.ChannelCapacity,
		}
		clock := layertest.NewClock()
		cfg.Now = clock.Now
		var l channels.Layer
		switch kind {
		case "capacity":
			cfg.Capacity, cfg.ChannelCapacity = 1<<20, nil
		case "expiry":
			cfg.Expiry = 24 * time.Hour
		case "groupexpiry":
			cfg.GroupExpiry = 24 * time.Hour
		}
		inner := inmemory.MustNew(cfg)
		l = inner
		switch kind {
		case "cancel":
			l = &dropsOnCancel{Layer: inner}
		case "reorder":
			l = &reorders{Layer: inner, stash: map[string][]channels.Content{}}
		case "shared":
			l = &keepsReference{Layer: inner}
		case "starve":
			l = &starves{Layer: inner}
		}
		clocks.Bind(l, clock)
		return l
	}, layertest.Options{Advance: clocks.Advance, NormalShards: shards})
}

// dropsOnCancel takes the next message in the background and, if its caller
// has given up by then, drops it.
type dropsOnCancel struct{ *inmemory.Layer }

func (l *dropsOnCancel) Receive(ctx context.Context, names ...string) (string, channels.Content, error) {
	type result struct {
		ch  string
		c   channels.Content
		err error
	}
	res := make(chan result, 1)
	go func() {
		bg, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		ch, c, err := l.Layer.Receive(bg, names...)
		res <- result{ch, c, err}
	}()
	select {
	case r := <-res:
		if r.err != nil && ctx.Err() != nil {
			return "", nil, ctx.Err()
		}
		if errors.Is(r.err, context.DeadlineExceeded) {
			return l.Receive(ctx, names...)
		}
		if r.err != nil {
			return "", nil, r.err
		}
		return r.ch, r.c, nil
	case <-ctx.Done():
		return "", nil, ctx.Err()
	}
}

func (l *dropsOnCancel) Poll(ctx context.Context, names ...string) (string, channels.Content, error) {
	return l.Layer.Poll(ctx, names...)
}

// reorders hands out the newest waiting message first.
type reorders struct {
	*inmemory.Layer
	mu    sync.Mutex
	stash map[string][]channels.Content
}

func (l *reorders) Receive(ctx context.Context, names ...string) (string, channels.Content, error) {
	l.mu.Lock()
	for _, n := range names {
		for {
			_, c, err := l.Layer.Poll(ctx, n)
			if err != nil || c == nil {
				break
			}
			l.stash[n] = append(l.stash[n], c)
		}
	}
	for _, n := range names {
		if s := l.stash[n]; len(s) > 0 {
			c := s[len(s)-1]
			l.stash[n] = s[:len(s)-1]
			l.mu.Unlock()
			return n, c, nil
		}
	}
	l.mu.Unlock()
	return l.Layer.Receive(ctx, names...)
}

func (l *reorders) Poll(ctx context.Context, names ...string) (string, channels.Content, error) {
	l.mu.Lock()
	for _, n := range names {
		if s := l.stash[n]; len(s) > 0 {
			c := s[len(s)-1]
			l.stash[n] = s[:len(s)-1]
			l.mu.Unlock()
			return n, c, nil
		}
	}
	l.mu.Unlock()
	return l.Layer.Poll(ctx, names...)
}

// keepsReference queues the caller's map itself instead of a copy.
type keepsReference struct {
	*inmemory.Layer
	mu    sync.Mutex
	queue map[string][]channels.Content
}

func (l *keepsReference) Send(ctx context.Context, ch string, c channels.Content) error {
	if err := l.Layer.Send(ctx, ch, channels.Content{}); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.queue == nil {
		l.queue = map[string][]channels.Content{}
	}
	l.queue[ch] = append(l.queue[ch], c)
	return nil
}

func (l *keepsReference) swap(ch string, c channels.Content) channels.Content {
	if c == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.queue[ch]
	if len(q) == 0 {
		return c
	}
	l.queue[ch] = q[1:]
	return q[0]
}

func (l *keepsReference) Receive(ctx context.Context, names ...string) (string, channels.Content, error) {
	ch, c, err := l.Layer.Receive(ctx, names...)
	return ch, l.swap(ch, c), err
}

func (l *keepsReference) Poll(ctx context.Context, names ...string) (string, channels.Content, error) {
	ch, c, err := l.Layer.Poll(ctx, names...)
	return ch, l.swap(ch, c), err
}

// starves always serves the first listed channel that has a message.
type starves struct{ *inmemory.Layer }

func (l *starves) Receive(ctx context.Context, names ...string) (string, channels.Content, error) {
	if len(names) == 0 {
		return "", nil, nil
	}
	for {
		for _, n := range names {
			if ch, c, err := l.Layer.Poll(ctx, n); err != nil || c != nil {
				return ch, c, err
			}
		}
		select {
		case <-ctx.Done():
			return "", nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
