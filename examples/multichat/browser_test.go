package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/browsertest"
	"github.com/gochannels/channels/internal/testenv"
)

// The multichat page in a real browser: two people log in through the form
// (each in a browser context of its own, so each has its own session
// cookie), the page's one WebSocket finds the user in that cookie, the two
// streams carry chat lines and presence, and logging out in one tab closes
// the same person's socket in another tab.
func TestMultichatInBrowsers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the multichat binary and starts Chromium")
	}
	testenv.Chromium(t)
	bin := testenv.GoBuild(t, "./examples/multichat")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	out := testenv.StartProcess(t, t.TempDir(), "multichat runserver", bin, "runserver", "--nodelay", addr)
	base := "http://" + addr + "/"
	testenv.WaitHTTP(t, base, 20*time.Second, out.String)

	b := browsertest.Start(t, out.String)
	login := func(tab *browsertest.Tab, name string) {
		t.Helper()
		tab.Open(base, `form[action="/login"]`)
		tab.Type(`input[name="name"]`, name)
		tab.Click(`form[action="/login"] button`)
		tab.WaitText("#me", name)
		tab.WaitText("#status", "connected")
	}

	alice := b.IsolatedTab("alice")
	login(alice, "alice")
	bob := b.IsolatedTab("bob")
	login(bob, "bob")
	alice.WaitText("#log p", "bob joined")

	alice.Type("#text", "hi bob")
	alice.Click("#say button")
	bob.WaitText("#log p", "alice: hi bob")
	alice.WaitText("#log p", "alice: hi bob")

	// A second tab of bob's is logged in by the same cookie.
	bob2 := bob.Sibling("bob's second")
	bob2.Open(base, "#status")
	bob2.WaitText("#me", "bob")
	bob2.WaitText("#status", "connected")

	// Logging out there closes the socket of bob's first tab, which did
	// nothing: the logout reached it through the layer.
	bob2.Click(`form[action="/logout"] button`)
	bob2.WaitText("h1", "multichat: log in")
	bob.WaitText("#status", "disconnected (4001)")
	alice.WaitText("#log p", "bob left")
}
