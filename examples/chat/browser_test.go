package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gochannels/channels/internal/testenv"
)

// The README's promise, in a real browser: the chat binary, run as
// "chat runserver 127.0.0.1:PORT" from an empty directory, serves the page,
// and two tabs of headless Chromium join one room and talk through it. The
// tabs type into the page's own form and read its own log, so the page's
// JavaScript, the browser's WebSocket, the gateway, the in-memory layer and
// the worker are all on the path.
func TestChatInTwoBrowserTabs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the chat binary and starts Chromium")
	}
	browser := testenv.Chromium(t)
	bin := testenv.GoBuild(t, "./examples/chat")
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	out := startProcessIn(t, t.TempDir(), "chat runserver", bin, "runserver", addr)
	base := "http://" + addr + "/"
	waitForPage(t, base, out)

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(browser),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.UserDataDir(t.TempDir()),
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
		)...)
	defer cancelAlloc()
	// The first tab starts the browser.
	tab1, cancel1 := chromedp.NewContext(alloc)
	defer cancel1()
	deadline, cancelDeadline := context.WithTimeout(tab1, 60*time.Second)
	defer cancelDeadline()
	tab1 = deadline

	do := func(tab context.Context, who string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(tab, steps...); err != nil {
			t.Fatalf("%s's tab: %v\nserver output:\n%s", who, err, out.String())
		}
	}
	// sees waits until the tab's chat log shows a line.
	sees := func(tab context.Context, who, line string) {
		t.Helper()
		expr := fmt.Sprintf(`Array.from(document.querySelectorAll("#log div")).some(d => d.textContent === %q)`, line)
		if _, err := chromedp.Run(tab, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(10*time.Second))); err != nil {
			var log string
			if got, err2 := chromedp.Run(tab, chromedp.Evaluate[string](`document.getElementById("log").innerText`)); err2 == nil {
				log = got
			}
			t.Fatalf("%s's tab never showed %q: %v\nits log:\n%s\nserver output:\n%s", who, line, err, log, out.String())
		}
	}
	join := func(tab context.Context, name string) {
		t.Helper()
		do(tab, name,
			chromedp.Navigate(base),
			chromedp.WaitVisible(chromedp.CSS("#join")),
			chromedp.SendKeys(chromedp.CSS("#name"), name),
			chromedp.Click(chromedp.CSS("#join button")),
			chromedp.WaitVisible(chromedp.CSS("#say")),
		)
		sees(tab, name, "connected to lobby as "+name)
	}
	say := func(tab context.Context, name, text string) {
		t.Helper()
		do(tab, name,
			chromedp.SendKeys(chromedp.CSS("#text"), text),
			chromedp.Click(chromedp.CSS("#say button")),
		)
	}

	join(tab1, "alice")
	sees(tab1, "alice", "alice joined lobby")
	// The second tab opens in the browser the first one started.
	tab2, cancel2 := chromedp.NewContext(tab1)
	defer cancel2()
	join(tab2, "bob")
	sees(tab1, "alice", "bob joined lobby")

	say(tab1, "alice", "hello from the first tab")
	sees(tab2, "bob", "alice: hello from the first tab")
	sees(tab1, "alice", "alice: hello from the first tab")

	say(tab2, "bob", "and back from the second")
	sees(tab1, "alice", "bob: and back from the second")

	// Closing the second tab closes its socket; the room hears that bob left.
	cancel2()
	sees(tab1, "alice", "bob left lobby")
}

// waitForPage waits until the server at base serves the chat page.
func waitForPage(t *testing.T, base string, out *lockedBuffer) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	for start := time.Now(); time.Since(start) < 20*time.Second; time.Sleep(50 * time.Millisecond) {
		resp, err := client.Get(base)
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			return
		}
	}
	t.Fatalf("%s did not serve the chat page within 20 s; server output:\n%s", base, out.String())
}
