package redislayer_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
	"github.com/redis/rueidis"
)

// rawClient is a plain Redis client for looking at what the layer stored.
func rawClient(t testing.TB, url string) rueidis.Client {
	t.Helper()
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DisableCache = true
	opt.ForceSingleClient = true
	c, err := rueidis.NewClient(opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// scanKeys lists the keys under prefix.
func scanKeys(t testing.TB, c rueidis.Client, prefix string) []string {
	t.Helper()
	var keys []string
	var cursor uint64
	for {
		e, err := c.Do(context.Background(), c.B().Scan().Cursor(cursor).Match(escapeGlob(prefix)+"*").Count(1000).Build()).AsScanEntry()
		if err != nil {
			t.Fatalf("SCAN: %v", err)
		}
		keys = append(keys, e.Elements...)
		if cursor = e.Cursor; cursor == 0 {
			return keys
		}
	}
}

func escapeGlob(s string) string {
	r := strings.NewReplacer("*", `\*`, "?", `\?`, "[", `\[`, "]", `\]`, `\`, `\\`)
	return r.Replace(s)
}

// Every key the layer creates has an expiry at every moment (checked by
// scanning while ordinary, process-specific and group traffic runs, with
// messages expiring unread and group members being evicted), and Flush
// leaves no key under the prefix.
func TestEveryKeyExpiresAndFlushDeletesAll(t *testing.T) {
	t.Parallel()
	url := testenv.RedisURL(t)
	prefix := testenv.Prefix("ttl")
	l := newLayer(t, redislayer.Config{
		Hosts:       []string{url},
		Prefix:      prefix,
		Expiry:      time.Second,
		GroupExpiry: 3 * time.Second,
		Capacity:    20,
	})
	raw := rawClient(t, url)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		noTTL     = map[string]string{} // key → type
		scans     atomic.Int64
		seenKinds sync.Map
	)
	// The scanner.
	wg.Go(func() {
		for ctx.Err() == nil {
			for _, k := range scanKeys(t, raw, prefix) {
				rest := strings.TrimPrefix(k, prefix)
				switch {
				case strings.HasPrefix(rest, ":group:"):
					seenKinds.Store("group", true)
				case strings.HasPrefix(rest, ":expired:"):
					seenKinds.Store("marker", true)
				case strings.Contains(rest, "!"):
					seenKinds.Store("process", true)
				default:
					seenKinds.Store("channel", true)
				}
				ttl, err := raw.Do(context.Background(), raw.B().Pttl().Key(k).Build()).AsInt64()
				if err == nil && ttl == -1 {
					typ, _ := raw.Do(context.Background(), raw.B().Type().Key(k).Build()).ToString()
					mu.Lock()
					noTTL[k] = typ
					mu.Unlock()
				}
			}
			scans.Add(1)
		}
	})
	// Ordinary channels, one of them never read (its messages expire).
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			_ = l.Send(ctx, "ttl.work", channels.Content{"i": int64(i)})
			_ = l.Send(ctx, "ttl.unread", channels.Content{"i": int64(i)})
			time.Sleep(time.Millisecond)
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			_, _, _ = l.Receive(ctx, "ttl.work")
		}
	})
	// Process-specific channels and groups: one connection read, one not.
	read, _ := l.NewChannel(ctx, "ttl.gw!")
	unread, _ := l.NewChannel(ctx, "ttl.gw!")
	other, _ := l.NewChannel(ctx, "ttl.other!") // nobody reads this prefix
	for _, ch := range []string{read, unread, other, "ttl.unread"} {
		if err := l.GroupAdd(ctx, "ttl-room", ch); err != nil {
			t.Fatal(err)
		}
	}
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			_ = l.Send(ctx, read, channels.Content{"i": int64(i)})
			_ = l.GroupSend(ctx, "ttl-room", channels.Content{"i": int64(i)})
			if i%50 == 0 {
				_ = l.GroupAdd(ctx, "ttl-room", unread)
				_ = l.GroupAdd(ctx, "ttl-room", other)
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
	wg.Go(func() {
		for ctx.Err() == nil {
			_, _, _ = l.Receive(ctx, read)
		}
	})
	wg.Wait()

	if len(noTTL) > 0 {
		t.Errorf("keys without an expiry seen during %d scans: %v", scans.Load(), noTTL)
	}
	var kinds []string
	seenKinds.Range(func(k, _ any) bool { kinds = append(kinds, k.(string)); return true })
	if len(kinds) < 4 {
		t.Errorf("the run created only these kinds of keys: %v; want channel, process, group and marker", kinds)
	}
	if c := l.Counters(); c.Evicted == 0 {
		t.Errorf("no group member was evicted although messages expired unread: %+v", c)
	}
	t.Logf("%d scans, kinds of keys seen: %v", scans.Load(), kinds)

	if err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	keys := scanKeys(t, raw, prefix)
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == prefix+":epoch" }) // see OnDataLoss
	if len(keys) > 0 {
		t.Fatalf("keys left under the prefix after Flush: %v", keys)
	}
}

// Flush deletes only keys under the layer's prefix, taken literally: glob
// characters in it match only themselves.
func TestFlushKeepsOtherPrefixes(t *testing.T) {
	url := testenv.RedisURL(t)
	base := testenv.Prefix("flush")
	ctx := t.Context()
	// Unescaped, the pattern "<base>[xz]*" would match "<base>z...".
	globby := newLayer(t, redislayer.Config{Hosts: []string{url}, Prefix: base + "[xz]"})
	unrelated := newLayer(t, redislayer.Config{Hosts: []string{url}, Prefix: base + "z"})
	for _, l := range []*redislayer.Layer{globby, unrelated} {
		if err := l.Send(ctx, "keep", channels.Content{"v": l.Prefix()}); err != nil {
			t.Fatal(err)
		}
		if err := l.GroupAdd(ctx, "g", "keep"); err != nil {
			t.Fatal(err)
		}
	}
	if err := globby.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, c, err := unrelated.Poll(ctx, "keep"); err != nil || c.String("v") != base+"z" {
		t.Fatalf("Flush of prefix %q removed a message under %q: %v, %v", globby.Prefix(), unrelated.Prefix(), c, err)
	}
	if m, err := unrelated.GroupChannels(ctx, "g"); err != nil || len(m) != 1 {
		t.Fatalf("Flush of prefix %q removed a group under %q: %v, %v", globby.Prefix(), unrelated.Prefix(), m, err)
	}
	if _, c, err := globby.Poll(ctx, "keep"); err != nil || c != nil {
		t.Fatalf("a message under the flushed prefix survived: %v, %v", c, err)
	}
}
