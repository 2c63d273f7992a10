package delay_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/delay"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

// collect is a DueFunc that records what it is given and removes it.
type collect struct {
	mu  sync.Mutex
	got []delay.Record
}

func (c *collect) send(_ context.Context, recs []delay.Record) []time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, recs...)
	return make([]time.Time, len(recs))
}

func deliver(t *testing.T, s *delay.Store, now time.Time, f delay.DueFunc) int {
	t.Helper()
	n, err := s.Deliver(t.Context(), now, 100, f)
	if err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	return n
}

func add(t *testing.T, s *delay.Store, recs ...delay.Record) int {
	t.Helper()
	n, err := s.Add(t.Context(), recs...)
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	return n
}

// Spec §5: a record created with delay 5000 ms is not due now, and is due
// at its due date + 1 ms; sending it delivers its content to its channel and
// deletes it.
func TestStoreRecordIsDueAtItsDueTime(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		s := openStore(t, cfg(t))
		now := time.Now().Truncate(time.Microsecond)
		due := now.Add(5000 * time.Millisecond)
		add(t, s, delay.Record{ID: "r1", Channel: "test", Content: channels.Content{"test": "value"}, Due: due})

		var c collect
		if n := deliver(t, s, now, c.send); n != 0 {
			t.Fatalf("claimed %d records now, want 0 (not due)", n)
		}
		if n := deliver(t, s, due.Add(-time.Millisecond), c.send); n != 0 {
			t.Fatalf("claimed %d records 1 ms before the due time, want 0", n)
		}
		next, ok, err := s.NextDue(t.Context())
		if err != nil || !ok || !next.Equal(due) {
			t.Fatalf("NextDue = %v, %v, %v; want %v", next, ok, err, due)
		}
		if n := deliver(t, s, due.Add(time.Millisecond), c.send); n != 1 {
			t.Fatalf("claimed %d records at due+1ms, want 1", n)
		}
		want := []delay.Record{{ID: "r1", Channel: "test", Content: channels.Content{"test": "value"}, Due: due}}
		if diff := cmp.Diff(want, c.got); diff != "" {
			t.Errorf("records sent (-want +got):\n%s", diff)
		}
		if n := pending(t, s); n != 0 {
			t.Errorf("pending after delivery = %d, want 0", n)
		}
		if _, ok, _ := s.NextDue(t.Context()); ok {
			t.Error("NextDue reports a record after delivery")
		}
	})
}

// Records come out earliest first, at most limit at a time.
func TestStoreDeliversInDueOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		s := openStore(t, cfg(t))
		base := time.Now()
		for _, i := range []int{3, 1, 4, 0, 2} {
			add(t, s, delay.Record{ID: seq(i), Channel: "c", Content: channels.Content{}, Due: base.Add(time.Duration(i) * time.Millisecond)})
		}
		var c collect
		n, err := s.Deliver(t.Context(), base.Add(time.Second), 3, c.send)
		if err != nil || n != 3 {
			t.Fatalf("Deliver = %d, %v; want 3", n, err)
		}
		deliver(t, s, base.Add(time.Second), c.send)
		var ids []string
		for _, r := range c.got {
			ids = append(ids, r.ID)
		}
		if diff := cmp.Diff([]string{seq(0), seq(1), seq(2), seq(3), seq(4)}, ids); diff != "" {
			t.Errorf("delivery order (-want +got):\n%s", diff)
		}
	})
}

// A record's ID is stored once: adding it again does nothing. With Keep the
// ID stays after delivery until purged; without it, it is gone at once.
func TestStoreIDsAreStoredOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		s := openStore(t, cfg(t))
		now := time.Now()
		kept := delay.Record{ID: "kept", Channel: "c", Content: channels.Content{"v": int64(1)}, Due: now, Keep: true}
		plain := delay.Record{ID: "plain", Channel: "c", Content: channels.Content{"v": int64(2)}, Due: now}
		if n := add(t, s, kept, plain, kept); n != 2 {
			t.Fatalf("Add of 3 records with 2 IDs stored %d, want 2", n)
		}
		if n := add(t, s, kept); n != 0 {
			t.Fatalf("Add of a scheduled ID stored %d, want 0", n)
		}
		var c collect
		if n := deliver(t, s, now.Add(time.Millisecond), c.send); n != 2 {
			t.Fatalf("delivered %d, want 2", n)
		}
		if n := add(t, s, kept); n != 0 {
			t.Errorf("Add of a delivered, kept ID stored %d, want 0", n)
		}
		if n := add(t, s, plain); n != 1 {
			t.Errorf("Add of a delivered ID without Keep stored %d, want 1", n)
		}
		if n := pending(t, s); n != 1 {
			t.Errorf("pending = %d, want 1", n)
		}
		if n, err := s.Purge(t.Context(), time.Now().Add(time.Second)); err != nil || n != 1 {
			t.Errorf("Purge = %d, %v; want 1 kept ID removed", n, err)
		}
		if n := add(t, s, kept); n != 1 {
			t.Errorf("Add of a purged ID stored %d, want 1", n)
		}
	})
}

// A record send asks to retry stays, with its new due time and one more
// attempt; the others are removed in the same transaction.
func TestStoreReschedules(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		s := openStore(t, cfg(t))
		now := time.Now().Truncate(time.Microsecond)
		add(t, s,
			delay.Record{ID: "a", Channel: "full", Content: channels.Content{}, Due: now},
			delay.Record{ID: "b", Channel: "ok", Content: channels.Content{}, Due: now.Add(time.Microsecond)})
		later := now.Add(time.Second)
		n, err := s.Deliver(t.Context(), now.Add(time.Millisecond), 10, func(_ context.Context, recs []delay.Record) []time.Time {
			retry := make([]time.Time, len(recs))
			for i, r := range recs {
				if r.Channel == "full" {
					retry[i] = later
				}
			}
			return retry
		})
		if err != nil || n != 2 {
			t.Fatalf("Deliver = %d, %v", n, err)
		}
		if n := pending(t, s); n != 1 {
			t.Fatalf("pending = %d, want 1", n)
		}
		var c collect
		if n := deliver(t, s, later.Add(-time.Millisecond), c.send); n != 0 {
			t.Fatalf("rescheduled record claimed before its new due time")
		}
		deliver(t, s, later, c.send)
		if len(c.got) != 1 || c.got[0].ID != "a" || c.got[0].Attempts != 1 || !c.got[0].Due.Equal(later) {
			t.Errorf("after rescheduling got %+v, want record a due %v with 1 attempt", c.got, later)
		}
	})
}

// Records a failed transaction claimed are not lost: if the DueFunc's
// results never commit (here: the store is closed before the commit), the
// records are claimed again later.
func TestStoreUncommittedDeliveryIsRepeated(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		sc := cfg(t)
		s1 := openStore(t, sc)
		now := time.Now()
		add(t, s1, delay.Record{ID: "x", Channel: "c", Content: channels.Content{}, Due: now})
		_, err := s1.Deliver(t.Context(), now, 10, func(context.Context, []delay.Record) []time.Time {
			return nil // wrong length: the transaction is rolled back
		})
		if err == nil {
			t.Fatal("Deliver accepted a DueFunc result of the wrong length")
		}
		s1.Close()
		s2 := openStore(t, sc)
		var c collect
		if n := deliver(t, s2, now, c.send); n != 1 || c.got[0].ID != "x" {
			t.Errorf("after a rolled-back delivery: claimed %d (%v), want record x again", n, c.got)
		}
	})
}

// The outcome of sends that happened is recorded even when Deliver's
// context ends while they run; otherwise they would all be sent again.
func TestStoreRecordsOutcomeAfterContextEnds(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		s := openStore(t, cfg(t))
		now := time.Now()
		add(t, s, delay.Record{ID: "slow", Channel: "c", Content: channels.Content{}, Due: now})
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		n, err := s.Deliver(ctx, now, 10, func(ctx context.Context, recs []delay.Record) []time.Time {
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond)
			return make([]time.Time, len(recs))
		})
		if err != nil || n != 1 {
			t.Fatalf("Deliver = %d, %v; want 1, nil", n, err)
		}
		if p := pending(t, s); p != 0 {
			t.Errorf("pending = %d, want 0: the send's outcome was not recorded", p)
		}
	})
}

// Opening migrates once and is idempotent; the version is recorded; a
// database with a newer schema is refused.
func TestStoreSchemaVersion(t *testing.T) {
	forEachBackend(t, func(t *testing.T, cfg func(*testing.T) delay.StoreConfig) {
		sc := cfg(t)
		s1 := openStore(t, sc)
		add(t, s1, delay.Record{ID: "keep-me", Channel: "c", Content: channels.Content{}, Due: time.Now().Add(time.Hour)})
		s1.Close()

		// Opening again (several times at once, as several servers
		// starting together would) keeps the data.
		var wg sync.WaitGroup
		stores := make([]*delay.Store, 4)
		errs := make([]error, 4)
		for i := range stores {
			wg.Go(func() { stores[i], errs[i] = delay.OpenStore(t.Context(), sc) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("concurrent open %d: %v", i, err)
			}
			defer stores[i].Close()
		}
		if v, err := stores[0].Version(t.Context()); err != nil || v != delay.SchemaVersion {
			t.Errorf("Version = %d, %v; want %d", v, err, delay.SchemaVersion)
		}
		if n := pending(t, stores[0]); n != 1 {
			t.Errorf("pending after reopening = %d, want 1", n)
		}

		setSchemaVersion(t, sc, 99)
		if s, err := delay.OpenStore(t.Context(), sc); err == nil {
			s.Close()
			t.Error("OpenStore accepted a database with schema version 99")
		} else if !strings.Contains(err.Error(), "newer") {
			t.Errorf("OpenStore on a newer schema: %v, want an error saying it is newer", err)
		}
	})
}

func setSchemaVersion(t *testing.T, sc delay.StoreConfig, v int) {
	t.Helper()
	prefix := sc.TablePrefix
	if prefix == "" {
		prefix = delay.DefaultTablePrefix
	}
	q := "UPDATE " + prefix + "delay_schema SET version = " + strconv.Itoa(v)
	if strings.HasPrefix(sc.URL, "postgres") {
		conn, err := pgx.Connect(t.Context(), sc.URL)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
		return
	}
	db, err := sql.Open("sqlite", strings.TrimPrefix(sc.URL, "sqlite://"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(t.Context(), q); err != nil {
		t.Fatal(err)
	}
}

// The forms of database URL Open understands.
func TestOpenURLs(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, url string
		ok        bool
	}{
		{"sqlite absolute", "sqlite://" + filepath.Join(dir, "a.db"), true},
		{"sqlite3 scheme", "sqlite3://" + filepath.Join(dir, "b.db"), true},
		{"sqlite opaque", "sqlite:" + filepath.Join(dir, "c.db"), true},
		{"plain path", filepath.Join(dir, "d.db"), true},
		{"memory", ":memory:", true},
		{"sqlite memory", "sqlite::memory:", true},
		{"empty", "", false},
		{"sqlite no path", "sqlite://", false},
		{"query in path", filepath.Join(dir, "e.db") + "?mode=ro", false},
		{"unknown scheme", "mysql://localhost/db", false},
		{"missing directory", filepath.Join(dir, "no", "such", "dir", "f.db"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := delay.OpenStore(t.Context(), delay.StoreConfig{URL: tc.url, Logger: testLogger(t)})
			if tc.ok != (err == nil) {
				t.Fatalf("Open(%q) error = %v, want ok=%v", tc.url, err, tc.ok)
			}
			if err != nil {
				if !strings.HasPrefix(err.Error(), "delay: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			defer s.Close()
			add(t, s, delay.Record{ID: "x", Channel: "c", Content: channels.Content{}, Due: time.Now()})
			if n := pending(t, s); n != 1 {
				t.Errorf("pending = %d, want 1", n)
			}
		})
	}
}

// Table prefixes are checked, and stores with different prefixes in one
// database do not see each other's records.
func TestTablePrefix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.db")
	for _, bad := range []string{"Upper_", "has-dash_", "1digit_", "x; DROP TABLE y", strings.Repeat("a", 41)} {
		if s, err := delay.OpenStore(t.Context(), delay.StoreConfig{URL: path, TablePrefix: bad}); err == nil {
			s.Close()
			t.Errorf("prefix %q accepted", bad)
		}
	}
	a := openStore(t, delay.StoreConfig{URL: path, TablePrefix: "a_", Logger: testLogger(t)})
	b := openStore(t, delay.StoreConfig{URL: path, TablePrefix: "b_", Logger: testLogger(t)})
	add(t, a, delay.Record{ID: "x", Channel: "c", Content: channels.Content{}, Due: time.Now()})
	if n := pending(t, b); n != 0 {
		t.Errorf("store b sees %d of store a's records", n)
	}
}

// A closed store refuses calls with ErrStoreClosed.
func TestStoreClosed(t *testing.T) {
	s := openStore(t, sqliteConfig(t))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Add(t.Context(), delay.Record{ID: "x", Due: time.Now()}); err != delay.ErrStoreClosed {
		t.Errorf("Add after Close = %v, want ErrStoreClosed", err)
	}
	if _, err := s.Pending(t.Context()); err != delay.ErrStoreClosed {
		t.Errorf("Pending after Close = %v, want ErrStoreClosed", err)
	}
}
