// Package browsertest drives headless Chromium, through chromedp, against
// pages that the project's examples serve, for the tests that need a real
// browser: the page's own JavaScript, the browser's WebSocket and its cookies.
//
// Chromium comes from testenv.Chromium: a test is skipped where there is
// none, and fails instead in CI (CHANNELS_REQUIRE_SERVICES=1).
package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gochannels/channels/internal/testenv"
)

// Timeout bounds a whole browser session; WaitTimeout bounds each wait for
// something to show on a page.
const (
	Timeout     = 90 * time.Second
	WaitTimeout = 10 * time.Second
)

// Browser is one headless Chromium process, stopped when the test ends.
type Browser struct {
	t    *testing.T
	root context.Context // the first tab: the one that started the process
	diag func() string
}

// Start starts Chromium with a fresh profile. diag, when not nil, gives text
// (a server's output, say) to print when a step fails.
func Start(t *testing.T, diag func() string) *Browser {
	t.Helper()
	path := testenv.Chromium(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		append(chromedp.DefaultExecAllocatorOptions[:],
			chromedp.ExecPath(path),
			chromedp.NoSandbox,
			chromedp.DisableGPU,
			chromedp.UserDataDir(t.TempDir()),
			// This machine's network is closed: no calls home.
			chromedp.Flag("disable-quic", true),
			chromedp.Flag("disable-component-update", true),
		)...)
	root, cancelRoot := chromedp.NewContext(alloc)
	root, cancelTimeout := context.WithTimeout(root, Timeout)
	t.Cleanup(func() { cancelTimeout(); cancelRoot(); cancelAlloc() })
	b := &Browser{t: t, root: root, diag: diag}
	// The first run starts the process; tabs opened later join it.
	if err := chromedp.Do(root); err != nil {
		t.Fatalf("browsertest: starting %s: %v", path, err)
	}
	return b
}

// Tab is one browser tab.
type Tab struct {
	b      *Browser
	name   string
	ctx    context.Context
	cancel context.CancelFunc
}

// Tab opens a tab that shares cookies with the browser's other shared tabs.
// name labels it in failures.
func (b *Browser) Tab(name string) *Tab {
	ctx, cancel := chromedp.NewContext(b.root)
	b.t.Cleanup(cancel)
	return &Tab{b: b, name: name, ctx: ctx, cancel: cancel}
}

// IsolatedTab opens a tab in a browser context of its own, with its own
// cookies, like a second person on another machine.
func (b *Browser) IsolatedTab(name string) *Tab {
	ctx, cancel := chromedp.NewContext(b.root, chromedp.WithNewBrowserContext())
	b.t.Cleanup(cancel)
	return &Tab{b: b, name: name, ctx: ctx, cancel: cancel}
}

// Close closes the tab, and with it the page's sockets.
func (tab *Tab) Close() { tab.cancel() }

// Do runs steps in the tab and fails the test if one fails.
func (tab *Tab) Do(steps ...chromedp.Action[chromedp.Void]) {
	tab.b.t.Helper()
	if err := chromedp.Do(tab.ctx, steps...); err != nil {
		tab.fail("%v", err)
	}
}

// Open loads url and waits until sel is visible.
func (tab *Tab) Open(url, sel string) {
	tab.b.t.Helper()
	tab.Do(chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// Type types text into the element sel, key by key.
func (tab *Tab) Type(sel, text string) {
	tab.b.t.Helper()
	tab.Do(chromedp.SendKeys(chromedp.CSS(sel), text))
}

// Click clicks the element sel.
func (tab *Tab) Click(sel string) {
	tab.b.t.Helper()
	tab.Do(chromedp.Click(chromedp.CSS(sel)))
}

// Text returns the text of the element sel as the page shows it.
func (tab *Tab) Text(sel string) string {
	tab.b.t.Helper()
	s, err := chromedp.Run(tab.ctx, chromedp.Evaluate[string](fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ""`, sel)))
	if err != nil {
		tab.fail("reading %s: %v", sel, err)
	}
	return s
}

// WaitText waits until some element matching sel has exactly the text want
// (its textContent), for at most WaitTimeout. It keeps looking across page
// loads, so it can follow a form's submission and redirect.
func (tab *Tab) WaitText(sel, want string) {
	tab.b.t.Helper()
	expr := fmt.Sprintf(`Array.from(document.querySelectorAll(%q)).some(e => e.textContent === %q)`, sel, want)
	var err error
	for deadline := time.Now().Add(WaitTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var ok bool
		if ok, err = chromedp.Run(tab.ctx, chromedp.Evaluate[bool](expr)); ok && err == nil {
			return
		}
		if tab.ctx.Err() != nil {
			break
		}
	}
	tab.fail("no %s showed %q within %v (last error: %v)\nthe page's text:\n%s", sel, want, WaitTimeout, err, tab.pageText())
}

// Eval evaluates the JavaScript expression expr in the tab's page and
// decodes its value, as JSON, into out (a pointer; nil to drop it).
func (tab *Tab) Eval(expr string, out any) {
	tab.b.t.Helper()
	s, err := chromedp.Run(tab.ctx, chromedp.Evaluate[string](fmt.Sprintf(`JSON.stringify((() => (%s))()) ?? "null"`, expr)))
	if err != nil {
		tab.fail("evaluating %s: %v", expr, err)
	}
	if out != nil {
		if err := json.Unmarshal([]byte(s), out); err != nil {
			tab.fail("evaluating %s: decoding %q: %v", expr, s, err)
		}
	}
}

// WaitTrue waits until the JavaScript expression expr is true in the
// tab's page, for at most WaitTimeout.
func (tab *Tab) WaitTrue(expr string) {
	tab.b.t.Helper()
	var err error
	for deadline := time.Now().Add(WaitTimeout); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var ok bool
		if ok, err = chromedp.Run(tab.ctx, chromedp.Evaluate[bool](fmt.Sprintf(`!!(%s)`, expr))); ok && err == nil {
			return
		}
		if tab.ctx.Err() != nil {
			break
		}
	}
	tab.fail("%s was not true within %v (last error: %v)\nthe page's text:\n%s", expr, WaitTimeout, err, tab.pageText())
}

func (tab *Tab) pageText() string {
	s, err := chromedp.Run(tab.ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	if err != nil {
		return fmt.Sprintf("(unreadable: %v)", err)
	}
	return s
}

func (tab *Tab) fail(format string, args ...any) {
	tab.b.t.Helper()
	msg := fmt.Sprintf(format, args...)
	if tab.b.diag != nil {
		msg += "\nserver output:\n" + tab.b.diag()
	}
	tab.b.t.Fatalf("%s's tab: %s", tab.name, msg)
}

// Sibling opens another tab in tab's browser context: it shares tab's
// cookies, like a second tab of the same person.
func (tab *Tab) Sibling(name string) *Tab {
	ctx, cancel := chromedp.NewContext(tab.ctx)
	tab.b.t.Cleanup(cancel)
	return &Tab{b: tab.b, name: name, ctx: ctx, cancel: cancel}
}
