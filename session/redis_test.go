package session_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/internal/testenv"
	"github.com/gochannels/channels/redislayer"
	"github.com/gochannels/channels/session"
	"github.com/gochannels/channels/worker"
)

// Environment of the helper worker process.
const (
	helperEnv       = "CHANNELS_SESSION_HELPER_WORKER"
	helperPrefixEnv = "CHANNELS_SESSION_HELPER_PREFIX"
)

func redisSetup(t *testing.T, url, prefix string) (*redislayer.Layer, *session.RedisStore) {
	t.Helper()
	l, err := redislayer.New(t.Context(), redislayer.Config{Hosts: []string{url}, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	st, err := session.OpenRedis(t.Context(), url, prefix+"session:")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return l, st
}

// TestRedisSessionAcrossWorkerProcesses: a value the connect consumer puts
// in the channel session, in this process, is read by the receive consumer
// of a worker in another process, over a Redis layer and a Redis session
// store.
func TestRedisSessionAcrossWorkerProcesses(t *testing.T) {
	url := testenv.RedisURL(t)
	prefix := testenv.Prefix("sessxproc")
	l, st := redisSetup(t, url, prefix)
	mgr := &session.Manager{Store: st}

	// The other process consumes only websocket.receive.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSessionWorker$", "-test.v")
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperPrefixEnv+"="+prefix, "REDIS_URL="+url)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close() // the helper stops when its stdin closes
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("helper worker: %v\n%s", err, out.String())
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Errorf("helper worker did not stop\n%s", out.String())
		}
	})

	// This process consumes only websocket.connect.
	r := channels.NewRouter()
	r.Route("websocket.connect", mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		session.FromContext(ctx).Put("secret", m.Content.String("secret"))
		session.FromContext(ctx).Put("pid", os.Getpid())
		return m.Reply(ctx, channels.Content{"accept": true})
	})))
	ctx, cancel := context.WithCancel(t.Context())
	w := &worker.Worker{Layer: l, Consumer: r, Logger: quietLogger(t)}
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	b := make([]byte, 8)
	_, _ = rand.Read(b)
	secret := hex.EncodeToString(b)
	reply, err := l.NewChannel(ctx, "websocket.send.xproc!")
	if err != nil {
		t.Fatal(err)
	}
	next := func() channels.Content {
		t.Helper()
		rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
		defer rcancel()
		_, c, err := l.Receive(rctx, reply)
		if err != nil {
			t.Fatalf("no reply: %v\nhelper output:\n%s", err, out.String())
		}
		return c
	}
	if err := l.Send(ctx, "websocket.connect", channels.Content{"reply_channel": reply, "path": "/", "order": 0, "secret": secret}); err != nil {
		t.Fatal(err)
	}
	if c := next(); c["accept"] != true {
		t.Fatalf("connect answered %v", c)
	}
	if err := l.Send(ctx, "websocket.receive", channels.Content{"reply_channel": reply, "path": "/", "order": 1, "text": "?"}); err != nil {
		t.Fatal(err)
	}
	got := next().String("text")
	want := fmt.Sprintf("secret=%s set by %d", secret, os.Getpid())
	if !strings.HasPrefix(got, want+" read by ") || strings.HasSuffix(got, fmt.Sprint(" ", os.Getpid())) {
		t.Fatalf("the other process answered %q, want %q read by another process", got, want)
	}
}

// TestHelperSessionWorker is the other worker process of
// TestRedisSessionAcrossWorkerProcesses; it does nothing on its own.
func TestHelperSessionWorker(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		t.Skip("runs only as the helper process of TestRedisSessionAcrossWorkerProcesses")
	}
	l, st := redisSetup(t, os.Getenv("REDIS_URL"), os.Getenv(helperPrefixEnv))
	mgr := &session.Manager{Store: st}
	r := channels.NewRouter()
	r.Route("websocket.receive", mgr.ChannelSession()(channels.ConsumerFunc(func(ctx context.Context, m *channels.Message) error {
		s := session.FromContext(ctx)
		pid, _ := s.GetInt("pid")
		return m.Reply(ctx, channels.Content{"text": fmt.Sprintf("secret=%s set by %d read by %d", s.GetString("secret"), pid, os.Getpid())})
	})))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	if err := (&worker.Worker{Layer: l, Consumer: r, Logger: quietLogger(t)}).Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestOrderingFourWorkersRedis is TestOrderingFourWorkers over the Redis
// layer and a Redis session store.
func TestOrderingFourWorkersRedis(t *testing.T) {
	url := testenv.RedisURL(t)
	l, st := redisSetup(t, url, testenv.Prefix("ordering"))
	runOrderingWorkers(t, l, st, 1000)
}
