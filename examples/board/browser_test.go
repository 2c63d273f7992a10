package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/gochannels/channels/internal/browsertest"
	"github.com/gochannels/channels/internal/sqldb"
	"github.com/gochannels/channels/internal/testenv"
)

// The board in one process, as "go run ./examples/board" runs it: the
// binary's runserver on a fresh SQLite file, with the binding relay inside.
func TestBoardInBrowsers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the board binary and starts Chromium")
	}
	testenv.Chromium(t)
	bin := testenv.GoBuild(t, "./examples/board")
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "board.db")
	t.Setenv("BOARD_DATABASE", dbPath)
	t.Setenv("CHANNELS_LAYER", "")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	out := testenv.StartProcess(t, dir, "board runserver", bin, "runserver", "--nodelay", addr)
	base := "http://" + addr + "/"
	testenv.WaitHTTP(t, base, 20*time.Second, out.String)

	// The direct UPDATE goes through database/sql and the SQLite driver,
	// from this process: no part of the application is involved.
	sqlDB, err := sql.Open("sqlite", dbPath+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	boardScenario(t, base, out.String, func(q string, args ...any) {
		t.Helper()
		if _, err := sqlDB.Exec(q, args...); err != nil {
			t.Fatalf("direct %s: %v", q, err)
		}
	})
}

// The production shape: gateway, worker and binding relay as separate
// processes of the board binary, meeting in Redis, on PostgreSQL (a schema
// of its own).
func TestBoardMultiProcessInBrowsers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the board binary and starts Chromium")
	}
	testenv.Chromium(t)
	layerURL := redisLayerURL(t)
	dbURL, conn := pgSchema(t)
	bin := testenv.GoBuild(t, "./examples/board")
	t.Setenv("BOARD_DATABASE", dbURL)
	t.Setenv("CHANNELS_LAYER", layerURL)
	port := testenv.FreePort(t)
	gw := testenv.StartProcess(t, "", "gateway", bin, "gateway", "-p", fmt.Sprint(port))
	w := testenv.StartProcess(t, "", "worker", bin, "runworker", "--threads", "4")
	relay := testenv.StartProcess(t, "", "runbinding", bin, "runbinding")
	diag := func() string {
		return "gateway:\n" + gw.String() + "\nworker:\n" + w.String() + "\nrunbinding:\n" + relay.String()
	}
	base := fmt.Sprintf("http://127.0.0.1:%d/", port)
	testenv.WaitHTTP(t, base, 20*time.Second, diag)

	// The direct UPDATE goes through pgx on a connection of the test's
	// own: no part of the application is involved.
	boardScenario(t, base, diag, func(q string, args ...any) {
		t.Helper()
		if _, err := conn.Exec(context.Background(), sqldb.Rebind(q), args...); err != nil {
			t.Fatalf("direct %s: %v", q, err)
		}
	})
}

// boardScenario drives ada (admin) and bob (not) in two isolated browser
// contexts through the board at base; exec runs SQL on the board's
// database directly.
func boardScenario(t *testing.T, base string, diag func() string, exec func(q string, args ...any)) {
	b := browsertest.Start(t, diag)
	login := func(tab *browsertest.Tab, name, role string) {
		t.Helper()
		tab.Open(base, `form[action="/login"]`)
		tab.Type(`input[name="name"]`, name)
		tab.Click(`form[action="/login"] button`)
		tab.WaitText("#me", name)
		tab.WaitText("#role", role)
		tab.WaitText("#status", "connected")
	}
	ada := b.IsolatedTab("ada")
	login(ada, "ada", "admin")
	bob := b.IsolatedTab("bob")
	login(bob, "bob", "user")

	// The seeded items: bob does not see the admin notes.
	ada.WaitText("#count", "2 items")
	ada.WaitText("#items .title", "Admin notes")
	bob.WaitText("#count", "1 item")
	bob.WaitText("#items .title", "Welcome")

	// ada adds an item through the page: both pages show it.
	ada.Type("#title", "Plan")
	ada.Type("#body", "Meet on Monday")
	ada.Click("#save")
	ada.WaitText("#count", "3 items")
	bob.WaitText("#count", "2 items")
	for _, tab := range []*browsertest.Tab{ada, bob} {
		tab.WaitText("#items .body", "Meet on Monday")
	}

	// Flipping admin_only on ada's page: the item is deleted from bob's
	// page and updated on ada's.
	ada.Click(`#items li[data-title="Plan"] input.admin-only`)
	bob.WaitText("#count", "1 item")
	if text := bob.Text("#items"); strings.Contains(text, "Plan") {
		t.Fatalf("bob still sees the admin-only item:\n%s", text)
	}
	ada.WaitText(`#items li[data-title="Plan"] .flag`, "admin only")
	ada.WaitText("#count", "3 items")

	// And back: bob's page gets it again (a create for bob's group).
	ada.Click(`#items li[data-title="Plan"] input.admin-only`)
	bob.WaitText("#count", "2 items")
	bob.WaitText("#items .title", "Plan")
	ada.WaitText(`#items li[data-title="Plan"] .flag`, "")

	// An UPDATE run directly against the database, not through the
	// application, reaches both pages.
	exec(`UPDATE board_items SET title = ?, body = ? WHERE title = ?`, "Plan (moved)", "Meet on Tuesday", "Plan")
	for _, tab := range []*browsertest.Tab{ada, bob} {
		tab.WaitText("#items .title", "Plan (moved)")
		tab.WaitText("#items .body", "Meet on Tuesday")
	}
	// A direct UPDATE that makes an item admin-only removes it from bob's
	// page too.
	exec(`UPDATE board_items SET admin_only = ? WHERE title = ?`, true, "Welcome")
	bob.WaitText("#count", "1 item")
	ada.WaitText(`#items li[data-title="Welcome"] .flag`, "admin only")

	// bob may not touch what he cannot see: his page never offers it, and
	// his deleting his last visible item works.
	bob.Click(`#items li[data-title="Plan (moved)"] button.delete`)
	bob.WaitText("#count", "0 items")
	ada.WaitText("#count", "2 items")
}
