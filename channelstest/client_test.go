package channelstest_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/channelstest"
)

func squareRouter() *channels.Router {
	r := channels.NewRouter()
	r.RouteFunc("square", func(ctx context.Context, m *channels.Message) error {
		v, _ := m.Content.Int("value")
		return m.Reply(ctx, channels.Content{"value": v * v})
	})
	r.RouteFunc("broadcast", func(ctx context.Context, m *channels.Message) error {
		return m.Group("test-group").Send(ctx, channels.Content{"value": int64(42)})
	})
	r.RouteFunc("websocket.connect", func(ctx context.Context, m *channels.Message) error {
		if m.Content.String("path") == "/private/" {
			return channels.ErrDenyConnection
		}
		return m.Reply(ctx, channels.Content{"accept": true})
	})
	return r
}

func TestB35_ClientSendAndConsume(t *testing.T) {
	c := channelstest.NewClient(t, squareRouter())
	if err := c.SendAndConsume("square", channels.Content{"value": 33}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Receive().Int("value"); got != 1089 {
		t.Fatalf("square of 33 = %d", got)
	}
	c.ReceiveNothing()
}

func TestClientGroups(t *testing.T) {
	c := channelstest.NewClient(t, squareRouter())
	c.JoinGroup("test-group")
	if err := c.SendAndConsume("broadcast", channels.Content{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Receive().Int("value"); got != 42 {
		t.Fatalf("group member got %d", got)
	}
}

func TestClientConnectAcceptAndReject(t *testing.T) {
	c := channelstest.NewClient(t, squareRouter())
	if err := c.SendAndConsume("websocket.connect", channels.Content{"path": "/"}); err != nil {
		t.Fatal(err)
	}
	if got := c.Receive(); !got.Bool("accept") {
		t.Fatalf("connect reply %v; want accept", got)
	}
	err := c.SendAndConsume("websocket.connect", channels.Content{"path": "/private/"})
	if err != channels.ErrDenyConnection {
		t.Fatalf("consumer error %v", err)
	}
	if got := c.Receive(); got["close"] != true {
		t.Fatalf("reject reply %v; want close true", got)
	}
}

func TestClientHelpers(t *testing.T) {
	c := channelstest.NewClient(t, squareRouter())
	if c.GetNextMessage("square") != nil {
		t.Fatal("message on an empty channel")
	}
	c.Send("square", channels.Content{"value": 2})
	if m := c.GetNextMessage("square"); m == nil || m.ReplyChannel != c.ReplyChannel {
		t.Fatalf("GetNextMessage = %v", m)
	}
	if ok, _ := c.TryConsume("square"); ok {
		t.Fatal("TryConsume found a message on an empty channel")
	}
	if c.ConsumerFor("square", channels.Content{}) == nil || c.ConsumerFor("nothing", channels.Content{}) != nil {
		t.Fatal("ConsumerFor")
	}
	if !strings.Contains(c.ReplyChannel, "!") {
		t.Fatalf("reply channel %q is not process-specific", c.ReplyChannel)
	}
}

// The failures a Client reports must say what happened. They are checked in
// a child process, since they fail the test they happen in.
func TestClientFailures(t *testing.T) {
	for name, want := range map[string]string{
		"timeout":  `no message on channel "square" within`,
		"unrouted": `no route matches the message on "nowhere"`,
		"noreply":  `no reply on "test.reply!`,
	} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestClientFailureChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), "CHANNELSTEST_FAIL="+name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the client did not fail the test:\n%s", out)
			}
			if !strings.Contains(string(out), want) {
				t.Fatalf("failure does not say %q:\n%s", want, out)
			}
		})
	}
}

func TestClientFailureChild(t *testing.T) {
	mode := os.Getenv("CHANNELSTEST_FAIL")
	if mode == "" {
		t.Skip("run by TestClientFailures")
	}
	c := channelstest.NewClient(t, squareRouter())
	c.Timeout = 50e6
	switch mode {
	case "timeout":
		_ = c.Consume("square")
	case "unrouted":
		_ = c.SendAndConsume("nowhere", channels.Content{})
	case "noreply":
		c.Receive()
	}
	fmt.Println("not reached")
}

func ExampleClient() {
	router := channels.NewRouter()
	router.RouteFunc("square", func(ctx context.Context, m *channels.Message) error {
		v, _ := m.Content.Int("value")
		return m.Reply(ctx, channels.Content{"value": v * v})
	})

	// In a test, pass the test's *testing.T.
	var t channelstest.TB = exampleT{}
	c := channelstest.NewClient(t, router)
	if err := c.SendAndConsume("square", channels.Content{"value": 33}); err != nil {
		t.Fatalf("consume: %v", err)
	}
	fmt.Println("reply:", c.Receive()["value"])
	// Output:
	// reply: 1089
}

// exampleT stands in for *testing.T in the example.
type exampleT struct{}

func (exampleT) Helper()                      {}
func (exampleT) Cleanup(func())               {}
func (exampleT) Output() io.Writer            { return io.Discard }
func (exampleT) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }
