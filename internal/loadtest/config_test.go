package loadtest_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/gochannels/channels/internal/loadtest"
)

func TestInvalidConfigurations(t *testing.T) {
	ctx := context.Background()
	ws := func(u string) loadtest.Common { return loadtest.Common{URL: u} }
	withPID := func(u string, pid int) loadtest.Common { return loadtest.Common{URL: u, ServerPID: pid} }
	for _, tc := range []struct {
		name string
		run  func() error
		want []string // each must appear in the message
	}{
		{"echo without URL", func() error {
			_, err := loadtest.RunEcho(ctx, loadtest.EchoConfig{Conns: 1, Messages: 1})
			return err
		}, []string{"-url is required"}},
		{"echo with an http URL", func() error {
			_, err := loadtest.RunEcho(ctx, loadtest.EchoConfig{Common: ws("http://127.0.0.1/echo/"), Conns: 1, Messages: 1})
			return err
		}, []string{"scheme must be ws or wss"}},
		{"echo with an unparsable URL", func() error {
			_, err := loadtest.RunEcho(ctx, loadtest.EchoConfig{Common: ws("ws://[::1"), Conns: 1, Messages: 1})
			return err
		}, []string{`-url "ws://[::1"`}},
		{"echo without host", func() error {
			_, err := loadtest.RunEcho(ctx, loadtest.EchoConfig{Common: ws("ws:///echo/"), Conns: 1, Messages: 1})
			return err
		}, []string{"has no host"}},
		{"echo with zero counts", func() error {
			_, err := loadtest.RunEcho(ctx, loadtest.EchoConfig{Common: ws("ws://127.0.0.1/echo/")})
			return err
		}, []string{"connections (-c) must be at least 1, got 0", "messages per connection (-n) must be at least 1, got 0"}},
		{"echo with negative size and pipeline", func() error {
			_, err := loadtest.RunEcho(ctx, loadtest.EchoConfig{Common: ws("ws://127.0.0.1/echo/"), Conns: 1, Messages: 1, Size: -1, Pipeline: -2})
			return err
		}, []string{"frame size (-size)", "pipeline (-pipeline)"}},
		{"echo with a huge frame", func() error {
			_, err := loadtest.RunEcho(ctx, loadtest.EchoConfig{Common: ws("ws://127.0.0.1/echo/"), Conns: 1, Messages: 1, Size: 1 << 30})
			return err
		}, []string{"frame size (-size) must be at most"}},
		{"fanout with zero counts", func() error {
			_, err := loadtest.RunFanout(ctx, loadtest.FanoutConfig{Common: ws("ws://127.0.0.1/fanout/")})
			return err
		}, []string{"subscribers (-s)", "messages (-m)"}},
		{"fanout with a negative rate and a bad room", func() error {
			_, err := loadtest.RunFanout(ctx, loadtest.FanoutConfig{Common: ws("ws://127.0.0.1/fanout/"), Subscribers: 1, Messages: 1, Rate: -5, Room: "a/b"})
			return err
		}, []string{"rate (-rate) must not be negative", `room "a/b"`}},
		{"idle without pid", func() error {
			_, err := loadtest.RunIdle(ctx, loadtest.IdleConfig{Common: ws("ws://127.0.0.1/echo/"), Conns: 1})
			return err
		}, []string{"process ID (-pid) is required"}},
		{"idle with a pid that does not exist", func() error {
			_, err := loadtest.RunIdle(ctx, loadtest.IdleConfig{Common: withPID("ws://127.0.0.1/echo/", 1<<30), Conns: 1})
			return err
		}, []string{"-pid 1073741824"}},
		{"idle with zero connections", func() error {
			_, err := loadtest.RunIdle(ctx, loadtest.IdleConfig{Common: withPID("ws://127.0.0.1/echo/", os.Getpid())})
			return err
		}, []string{"connections (-c) must be at least 1, got 0"}},
		{"connect with an http URL and zero counts", func() error {
			_, err := loadtest.RunConnect(ctx, loadtest.ConnectConfig{Common: ws("http://127.0.0.1/echo/"), Concurrency: -1})
			return err
		}, []string{"scheme must be ws or wss", "connections (-n) must be at least 1, got 0", "handshakes in flight (-c) must be at least 1, got -1"}},
		{"http with a ws URL and zero counts", func() error {
			_, err := loadtest.RunHTTP(ctx, loadtest.HTTPConfig{Common: ws("ws://127.0.0.1/http/")})
			return err
		}, []string{"scheme must be http or https", "connections (-c)", "requests (-n)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			if !errors.Is(err, loadtest.ErrInvalidConfig) {
				t.Fatalf("error %v, want ErrInvalidConfig", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestUnreachableTargetIsAnError(t *testing.T) {
	ctx := context.Background()
	addr := deadAddr(t)
	for name, run := range map[string]func() error{
		"echo": func() error {
			_, err := loadtest.RunEcho(ctx, loadtest.EchoConfig{Common: quick("ws://" + addr + "/echo/"), Conns: 5, Messages: 1})
			return err
		},
		"fanout": func() error {
			_, err := loadtest.RunFanout(ctx, loadtest.FanoutConfig{Common: quick("ws://" + addr + "/fanout/"), Subscribers: 5, Messages: 1})
			return err
		},
		"idle": func() error {
			c := quick("ws://" + addr + "/echo/")
			c.ServerPID = os.Getpid()
			_, err := loadtest.RunIdle(ctx, loadtest.IdleConfig{Common: c, Conns: 5})
			return err
		},
		"connect": func() error {
			_, err := loadtest.RunConnect(ctx, loadtest.ConnectConfig{Common: quick("ws://" + addr + "/echo/"), Conns: 5})
			return err
		},
		"http": func() error {
			_, err := loadtest.RunHTTP(ctx, loadtest.HTTPConfig{Common: quick("http://" + addr + "/http/"), Conns: 5, Requests: 10})
			return err
		},
	} {
		err := run()
		if !errors.Is(err, loadtest.ErrConnect) || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("%s: error %v, want ErrConnect saying the connection was refused", name, err)
		}
	}
}
