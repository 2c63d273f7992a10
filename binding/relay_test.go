package binding_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/binding"
	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/internal/testenv"
)

func itemBinding(t *testing.T, b binding.Binding[Item]) *binding.Binding[Item] {
	b.Model, b.Stream, b.Table = "board.item", "items", "items"
	if b.Fields == nil && b.Exclude == nil {
		b.Fields = []string{"title", "admin_only", "n"}
	}
	b.GroupNames = itemGroups
	return mustNew(t, b)
}

// TestAdminOnlyTransition: flipping admin_only on, by a write outside the
// binding, sends "delete" to the non-admins and "update" to the admins;
// flipping it off sends "create" to the non-admins and "update" to the
// admins (spec §3, flaw B1 fixed).
func TestAdminOnlyTransition(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createItems()
		b := itemBinding(t, binding.Binding[Item]{})
		srv := startServer(t, e, nil)
		r := startRelay(t, e, srv, b)
		e.raw("INSERT INTO items (title) VALUES ('minutes')")
		id := e.queryInt("SELECT id FROM items")
		waitFor(t, "the create to be relayed", func() bool { return r.Stats().Changes == 1 })
		admin := srv.dial(t, "", "admins")
		user := srv.dial(t, "", "users")
		both := srv.dial(t, "", "admins", "users")

		e.raw("UPDATE items SET admin_only = ? WHERE id = ?", true, id)
		a, u := receive(t, admin), receive(t, user)
		// A socket in both groups hears the delete, then the update.
		if d, up := receive(t, both), receive(t, both); d.Payload.Action != "delete" || up.Payload.Action != "update" || d.Payload.ChangeID != up.Payload.ChangeID {
			t.Fatalf("a socket in both groups got %s then %s", d.Payload.Action, up.Payload.Action)
		}
		both.Close(1000, "")
		if a.Payload.Action != "update" || pkOf(t, a) != id || a.Payload.Data["admin_only"] != true {
			t.Fatalf("admin got %+v, want update with admin_only true", a.Payload)
		}
		if u.Payload.Action != "delete" || pkOf(t, u) != id || u.Payload.Data["title"] != "minutes" {
			t.Fatalf("non-admin got %+v, want delete of %d", u.Payload, id)
		}
		if a.Payload.ChangeID != u.Payload.ChangeID {
			t.Fatalf("one change, two change ids: %d, %d", a.Payload.ChangeID, u.Payload.ChangeID)
		}

		e.raw("UPDATE items SET admin_only = ?, title = 'public minutes' WHERE id = ?", false, id)
		a, u = receive(t, admin), receive(t, user)
		if a.Payload.Action != "update" || a.Payload.Data["admin_only"] != false {
			t.Fatalf("admin got %+v, want update with admin_only false", a.Payload)
		}
		if u.Payload.Action != "create" || pkOf(t, u) != id || u.Payload.Data["title"] != "public minutes" {
			t.Fatalf("non-admin got %+v, want create of %d", u.Payload, id)
		}

		// Hidden from non-admins, an item's changes reach the admins only.
		e.raw("UPDATE items SET admin_only = ? WHERE id = ?", true, id)
		receive(t, admin)
		receive(t, user)
		e.raw("UPDATE items SET title = 'secret minutes' WHERE id = ?", id)
		if a := receive(t, admin); a.Payload.Action != "update" || a.Payload.Data["title"] != "secret minutes" {
			t.Fatalf("admin got %+v", a.Payload)
		}
		e.raw("DELETE FROM items WHERE id = ?", id)
		if a := receive(t, admin); a.Payload.Action != "delete" {
			t.Fatalf("admin got %+v", a.Payload)
		}
		user.ReceiveNothing(300 * time.Millisecond)
		admin.ReceiveNothing(0)
	})
}

// TestBulkRawUpdate: two UPDATEs of 1,000 rows each, run with the
// database's own driver, reach each subscribed group as 2,000 messages,
// each row's two changes in commit order.
func TestBulkRawUpdate(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createItems()
		b := itemBinding(t, binding.Binding[Item]{})
		srv := startServer(t, e, nil)
		r := startRelay(t, e, srv, b)
		if e.pg {
			e.raw("INSERT INTO items (title) SELECT 'item ' || x FROM generate_series(1, 1000) x")
		} else {
			e.raw("INSERT INTO items (title) WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000) SELECT 'item ' || x FROM c")
		}
		t0 := time.Now()
		waitFor(t, "the creates to be relayed", func() bool { return r.Stats().Changes == 1000 })
		t.Logf("creates relayed in %v", time.Since(t0))
		admin := srv.dial(t, "", "admins")
		user := srv.dial(t, "", "users")
		t2 := time.Now()
		if n := e.raw("UPDATE items SET n = n + 1"); n != 1000 {
			t.Fatalf("updated %d rows", n)
		}
		e.raw("UPDATE items SET n = n + 1")
		t.Logf("updates took %v", time.Since(t2))
		t1 := time.Now()
		defer func() { t.Logf("updates received in %v", time.Since(t1)) }()
		for _, ws := range []*channelstest.WSClient{admin, user} {
			last := map[int64]int64{}
			ids := map[int64]bool{}
			for range 2000 {
				m := receive(t, ws)
				pk := pkOf(t, m)
				n := int64(m.Payload.Data["n"].(float64))
				if m.Payload.Action != "update" || n != last[pk]+1 {
					t.Fatalf("row %d: got %s n=%d after n=%d", pk, m.Payload.Action, n, last[pk])
				}
				last[pk] = n
				if ids[m.Payload.ChangeID] {
					t.Fatalf("change %d twice", m.Payload.ChangeID)
				}
				ids[m.Payload.ChangeID] = true
			}
			if len(last) != 1000 {
				t.Fatalf("%d rows reported", len(last))
			}
			ws.ReceiveNothing(100 * time.Millisecond)
		}
	})
}

// TestTwoRelays: two relays on one PostgreSQL database, each with its own
// connections, share the work; while four writers commit 1,000 changes to
// 50 rows, every change is sent once, and each row's changes arrive in
// commit order.
func TestTwoRelays(t *testing.T) {
	e := pgEnv(t)
	e.createItems()
	b := itemBinding(t, binding.Binding[Item]{})
	srv := startServer(t, e, nil)
	db2, err := binding.Open(context.Background(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	e.raw("INSERT INTO items (title) SELECT 'item ' || x FROM generate_series(1, 50) x")
	admin := srv.dial(t, "", "admins")
	layer := srv.Layer.(channels.GroupLayer)
	r1 := &binding.Relay{DB: e.db, Layer: layer, Bindings: []binding.Registration{b}, BatchSize: 20}
	r2 := &binding.Relay{DB: db2, Layer: layer, Bindings: []binding.Registration{b}, BatchSize: 20}
	runRelay(t, r1)
	runRelay(t, r2)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for range 250 {
				id := 1 + rng.IntN(50)
				if _, err := e.db.Exec(context.Background(), "UPDATE items SET n = n + 1 WHERE id = ?", id); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	last := map[int64]int64{}
	seen := map[int64]bool{}
	for range 1000 {
		m := receive(t, admin)
		if seen[m.Payload.ChangeID] {
			t.Fatalf("change %d sent twice", m.Payload.ChangeID)
		}
		seen[m.Payload.ChangeID] = true
		pk, n := pkOf(t, m), int64(m.Payload.Data["n"].(float64))
		if n != last[pk]+1 {
			t.Fatalf("row %d: n=%d after n=%d", pk, n, last[pk])
		}
		last[pk] = n
	}
	admin.ReceiveNothing(300 * time.Millisecond)
	s1, s2 := r1.Stats(), r2.Stats()
	if s1.Changes+s2.Changes != 1000 {
		t.Fatalf("relays handled %d + %d changes, want 1000", s1.Changes, s2.Changes)
	}
	t.Logf("relay 1 sent %d changes, relay 2 %d", s1.Changes, s2.Changes)
}

// TestChangesWaitForARelay: changes committed while no relay runs are sent
// when one starts; those older than Retention are dropped and counted.
func TestChangesWaitForARelay(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createItems()
		b := itemBinding(t, binding.Binding[Item]{})
		if err := binding.Install(context.Background(), e.db, b); err != nil {
			t.Fatal(err)
		}
		e.raw("INSERT INTO items (title) VALUES ('old')")
		time.Sleep(300 * time.Millisecond)
		e.raw("INSERT INTO items (title) VALUES ('new')")
		srv := startServer(t, e, nil)
		ws := srv.dial(t, "", "admins")
		r := &binding.Relay{DB: e.db, Layer: srv.Layer.(channels.GroupLayer), Bindings: []binding.Registration{b}, Retention: 200 * time.Millisecond}
		runRelay(t, r)
		if m := receive(t, ws); m.Payload.Action != "create" || m.Payload.Data["title"] != "new" {
			t.Fatalf("got %+v, want the create of 'new'", m.Payload)
		}
		ws.ReceiveNothing(200 * time.Millisecond)
		if st := r.Stats(); st.Expired != 1 || st.Changes != 1 {
			t.Fatalf("stats %+v, want 1 expired and 1 change", st)
		}
	})
}

// TestUninstall: after Uninstall writes are no longer captured and the
// package's tables are gone; Install again works.
func TestUninstall(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		ctx := context.Background()
		e.createItems()
		b := itemBinding(t, binding.Binding[Item]{})
		if err := binding.Install(ctx, e.db, b); err != nil {
			t.Fatal(err)
		}
		if err := binding.Install(ctx, e.db, b); err != nil {
			t.Fatalf("second Install: %v", err)
		}
		e.raw("INSERT INTO items (title) VALUES ('a')")
		if n := e.queryInt("SELECT COUNT(*) FROM channels_binding_outbox"); n != 1 {
			t.Fatalf("%d changes in the outbox", n)
		}
		if err := binding.Uninstall(ctx, e.db, b); err != nil {
			t.Fatal(err)
		}
		e.raw("INSERT INTO items (title) VALUES ('b')")
		var tables string
		if e.pg {
			tables = "SELECT COUNT(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE 'channels_binding%'"
		} else {
			tables = "SELECT COUNT(*) FROM sqlite_master WHERE name LIKE 'channels_binding%'"
		}
		if n := e.queryInt(tables); n != 0 {
			t.Fatalf("%d of the package's tables or triggers left", n)
		}
		if err := binding.Install(ctx, e.db, b); err != nil {
			t.Fatal(err)
		}
		e.raw("UPDATE items SET n = 1")
		if n := e.queryInt("SELECT COUNT(*) FROM channels_binding_outbox"); n != 2 {
			t.Fatalf("%d changes in the outbox after reinstalling, want 2", n)
		}
	})
}

// TestRolledBackWriteIsNotSent: a change whose transaction rolls back never
// reaches a socket.
func TestRolledBackWriteIsNotSent(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createItems()
		b := itemBinding(t, binding.Binding[Item]{})
		srv := startServer(t, e, nil)
		startRelay(t, e, srv, b)
		ws := srv.dial(t, "", "admins")
		ctx := context.Background()
		if e.pg {
			tx, err := e.rawPG.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO items (title) VALUES ('ghost')"); err != nil {
				t.Fatal(err)
			}
			_ = tx.Rollback(ctx)
		} else {
			tx, err := e.rawSQL.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("INSERT INTO items (title) VALUES ('ghost')"); err != nil {
				t.Fatal(err)
			}
			_ = tx.Rollback()
		}
		e.raw("INSERT INTO items (title) VALUES ('real')")
		if m := receive(t, ws); m.Payload.Data["title"] != "real" {
			t.Fatalf("got %+v", m.Payload)
		}
		ws.ReceiveNothing(200 * time.Millisecond)
	})
}

// TestPrimaryKeyChange: an UPDATE of the primary key is a delete of the old
// key and a create of the new one.
func TestPrimaryKeyChange(t *testing.T) {
	eachDB(t, func(t *testing.T, e *env) {
		e.createItems()
		b := itemBinding(t, binding.Binding[Item]{})
		srv := startServer(t, e, nil)
		r := startRelay(t, e, srv, b)
		e.raw("INSERT INTO items (id, title) VALUES (1, 'a')")
		waitFor(t, "the create to be relayed", func() bool { return r.Stats().Changes == 1 })
		ws := srv.dial(t, "", "users")
		e.raw("UPDATE items SET id = 2 WHERE id = 1")
		if m := receive(t, ws); m.Payload.Action != "delete" || pkOf(t, m) != 1 {
			t.Fatalf("got %+v, want delete of 1", m.Payload)
		}
		if m := receive(t, ws); m.Payload.Action != "create" || pkOf(t, m) != 2 {
			t.Fatalf("got %+v, want create of 2", m.Payload)
		}
	})
}

// TestGroupNamesPanics: a change on which the application's GroupNames
// panics is logged, counted and skipped; the relay goes on.
func TestGroupNamesPanics(t *testing.T) {
	e := sqliteEnv(t)
	e.createItems()
	b := mustNew(t, binding.Binding[Item]{
		Model: "board.item", Stream: "items", Table: "items", Fields: []string{"title"},
		GroupNames: func(it Item) []string {
			if it.Title == "boom" {
				panic("boom")
			}
			return []string{"all"}
		},
	})
	srv := startServer(t, e, nil)
	r := startRelay(t, e, srv, b)
	ws := srv.dial(t, "", "all")
	e.raw("INSERT INTO items (title) VALUES ('boom')")
	e.raw("INSERT INTO items (title) VALUES ('fine')")
	if m := receive(t, ws); m.Payload.Data["title"] != "fine" {
		t.Fatalf("got %+v", m.Payload)
	}
	waitFor(t, "the count of the message sent", func() bool { return r.Stats().Sent == 1 })
	if st := r.Stats(); st.Errors != 1 || st.Changes != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMessageTooLarge: a change whose message the layer refuses as too
// large is dropped and counted; the changes after it still go out.
func TestMessageTooLarge(t *testing.T) {
	e := sqliteEnv(t)
	e.createItems()
	b := itemBinding(t, binding.Binding[Item]{})
	srv := startServer(t, e, nil)
	r := startRelay(t, e, srv, b)
	ws := srv.dial(t, "", "admins")
	ws.Timeout = 20 * time.Second // a megabyte through SQLite's JSON functions under -race is slow
	e.raw("INSERT INTO items (title) VALUES (?)", strings.Repeat("x", 1<<20+1000))
	e.raw("INSERT INTO items (title) VALUES ('small')")
	if m := receive(t, ws); m.Payload.Data["title"] != "small" {
		t.Fatalf("got %+v", m.Payload.Action)
	}
	waitFor(t, "the small change to go to both groups", func() bool { return r.Stats().Sent == 2 })
	if st := r.Stats(); st.Errors != 2 { // one per group
		t.Fatalf("stats %+v", st)
	}
}

// TestRelayReconnects: a PostgreSQL relay whose connections are terminated
// by the server reconnects, and the changes committed meanwhile go out.
func TestRelayReconnects(t *testing.T) {
	e := pgEnv(t)
	e.createItems()
	b := itemBinding(t, binding.Binding[Item]{})
	srv := startServer(t, e, nil)
	// The relay's connections carry a name of their own, so that only they
	// are terminated (other tests may run relays on this server).
	name := "binding-test-" + strings.ReplaceAll(testenv.Prefix("r"), ":", "")
	db, err := binding.Open(context.Background(), e.url+"&application_name="+name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &binding.Relay{DB: db, Layer: srv.Layer.(channels.GroupLayer), Bindings: []binding.Registration{b}, PollInterval: 100 * time.Millisecond}
	runRelay(t, r)
	ws := srv.dial(t, "", "admins")
	e.raw("INSERT INTO items (title) VALUES ('before')")
	first := receive(t, ws)
	if first.Payload.Data["title"] != "before" {
		t.Fatalf("got %+v", first.Payload)
	}
	if n := e.queryInt("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = ?", name); n < 2 {
		t.Fatalf("terminated %d relay connections, want at least its LISTEN and claim connections", n)
	}
	e.raw("INSERT INTO items (title) VALUES ('after')")
	for {
		m := receive(t, ws)
		if m.Payload.Data["title"] == "after" {
			break
		}
		// Terminated between sending and deleting, the first change is
		// sent again, with its change id.
		if m.Payload.Data["title"] != "before" || m.Payload.ChangeID != first.Payload.ChangeID {
			t.Fatalf("got %+v", m.Payload)
		}
	}
}

// TestSQLiteRelayTakeover: of two relays on one SQLite database one is
// active and each change goes out once; when it stops, the other takes
// over.
func TestSQLiteRelayTakeover(t *testing.T) {
	e := sqliteEnv(t)
	e.createItems()
	b := itemBinding(t, binding.Binding[Item]{})
	srv := startServer(t, e, nil)
	layer := srv.Layer.(channels.GroupLayer)
	r1 := &binding.Relay{DB: e.db, Layer: layer, Bindings: []binding.Registration{b}, PollInterval: 50 * time.Millisecond}
	ctx1, stop1 := context.WithCancel(context.Background())
	done1 := make(chan error, 1)
	if err := binding.Install(ctx1, e.db, b); err != nil {
		t.Fatal(err)
	}
	go func() { done1 <- r1.Run(ctx1) }()
	defer func() { stop1(); <-done1 }()
	waitFor(t, "the first relay to take the lease", func() bool {
		return e.queryInt("SELECT COUNT(*) FROM channels_binding_lease") == 1
	})
	db2, err := binding.Open(context.Background(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	r2 := &binding.Relay{DB: db2, Layer: layer, Bindings: []binding.Registration{b}, PollInterval: 50 * time.Millisecond}
	runRelay(t, r2)
	ws := srv.dial(t, "", "admins")
	for i := range 20 {
		e.raw("INSERT INTO items (title) VALUES (?)", fmt.Sprint("first ", i))
	}
	for i := range 20 {
		if m := receive(t, ws); m.Payload.Data["title"] != fmt.Sprint("first ", i) {
			t.Fatalf("got %+v", m.Payload)
		}
	}
	ws.ReceiveNothing(200 * time.Millisecond)
	if s1, s2 := r1.Stats(), r2.Stats(); s1.Changes != 20 || s2.Changes != 0 {
		t.Fatalf("relays handled %d and %d changes, want 20 and 0", s1.Changes, s2.Changes)
	}
	stop1()
	<-done1
	done1 <- nil
	e.raw("INSERT INTO items (title) VALUES ('second')")
	if m := receive(t, ws); m.Payload.Data["title"] != "second" {
		t.Fatalf("got %+v", m.Payload)
	}
	ws.ReceiveNothing(200 * time.Millisecond)
}
