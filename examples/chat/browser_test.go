package main

import (
	"fmt"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/browsertest"
	"github.com/gochannels/channels/internal/testenv"
)

// The README's promise, in a real browser: the chat binary, run as
// "chat runserver 127.0.0.1:PORT" from an empty directory, serves the page,
// and two tabs of headless Chromium join one room and talk through it. The
// tabs type into the page's own form and read its own log, so the page's
// JavaScript, the WebSocketBridge the gateway serves, the browser's
// WebSocket, the gateway, the in-memory layer and the worker are all on the
// path. At the end the server restarts and the page reconnects by itself.
func TestChatInTwoBrowserTabs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the chat binary and starts Chromium")
	}
	testenv.Chromium(t)
	bin := testenv.GoBuild(t, "./examples/chat")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	out := &testenv.Output{}
	var server *exec.Cmd
	start := func() {
		t.Helper()
		server = exec.Command(bin, "runserver", addr)
		server.Dir = t.TempDir()
		server.Stdout, server.Stderr = out, out
		if err := server.Start(); err != nil {
			t.Fatal(err)
		}
	}
	stop := func() {
		t.Helper()
		_ = server.Process.Signal(syscall.SIGTERM)
		if err := server.Wait(); err != nil {
			t.Errorf("chat runserver exited with %v after SIGTERM:\n%s", err, out.String())
		}
	}
	start()
	t.Cleanup(func() {
		if server.ProcessState == nil {
			stop()
		}
	})
	base := "http://" + addr + "/"
	testenv.WaitHTTP(t, base, 20*time.Second, out.String)

	b := browsertest.Start(t, out.String)
	join := func(tab *browsertest.Tab, name string) {
		t.Helper()
		tab.Open(base, "#join")
		tab.Type("#name", name)
		tab.Click("#join button")
		tab.WaitText("#log div", "connected to lobby as "+name)
	}
	say := func(tab *browsertest.Tab, text string) {
		t.Helper()
		tab.Type("#text", text)
		tab.Click("#say button")
	}

	alice := b.Tab("alice")
	join(alice, "alice")
	alice.WaitText("#log div", "alice joined lobby")
	bob := b.Tab("bob")
	join(bob, "bob")
	alice.WaitText("#log div", "bob joined lobby")

	say(alice, "hello from the first tab")
	bob.WaitText("#log div", "alice: hello from the first tab")
	alice.WaitText("#log div", "alice: hello from the first tab")

	say(bob, "and back from the second")
	alice.WaitText("#log div", "bob: and back from the second")

	// Closing the second tab closes its socket; the room hears that bob left.
	bob.Close()
	alice.WaitText("#log div", "bob left lobby")

	// The server stops (its sockets close with 1001) and starts again on
	// the same port: the page's WebSocketBridge reconnects by itself, and
	// a line typed while it was down goes out when it is back.
	alice.WaitText("#status", "connected")
	stop()
	alice.WaitText("#log div", "disconnected (1001)")
	alice.WaitTrue(`document.getElementById("status").textContent.startsWith("reconnecting")`)
	say(alice, "typed while the server was down")
	start()
	alice.WaitText("#status", "connected")
	alice.WaitText("#log div", "alice: typed while the server was down")
	say(alice, "and after")
	alice.WaitText("#log div", "alice: and after")
}
