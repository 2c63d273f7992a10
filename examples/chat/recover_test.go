package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gochannels/channels/gateway"
	"github.com/gochannels/channels/internal/testenv"
)

// recoverySockets is how many sockets sit in the room while Redis restarts.
const recoverySockets = 100

// chatSocket is one member of the room: it records the events it receives
// and how its connection ended.
type chatSocket struct {
	c      *websocket.Conn
	mu     sync.Mutex
	events []Event
	code   websocket.StatusCode // close code received, -1 while open
	endAt  time.Time            // when the connection ended
	ended  chan struct{}
}

func dialChat(ctx context.Context, addr, room, user string) (*chatSocket, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(dctx, "ws://"+addr+"/chat/"+room+"/"+user+"/", &websocket.DialOptions{
		HTTPHeader: http.Header{"Origin": {"http://" + addr}}, // a page of this server
	})
	if err != nil {
		return nil, err
	}
	s := &chatSocket{c: c, code: -1, ended: make(chan struct{})}
	go func() {
		defer close(s.ended)
		for {
			_, b, err := c.Read(context.Background())
			if err != nil {
				s.mu.Lock()
				s.code = websocket.CloseStatus(err)
				s.endAt = time.Now()
				s.mu.Unlock()
				return
			}
			var ev Event
			var m struct{ Text string }
			_ = json.Unmarshal(b, &m)
			if json.Unmarshal(b, &ev) != nil || ev.Type == "" {
				_ = json.Unmarshal([]byte(m.Text), &ev)
			}
			s.mu.Lock()
			s.events = append(s.events, ev)
			s.mu.Unlock()
		}
	}()
	return s, nil
}

// saw reports whether the socket received ev.
func (s *chatSocket) saw(ev Event) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.events, ev)
}

func (s *chatSocket) closeCode() websocket.StatusCode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.code
}

// Gateway and two workers over a private Redis, with 100 sockets in one
// room: Redis is killed and restarted without its data. The room's group
// is gone, so every socket must be closed by the gateway with
// gateway.CloseLayerDataLost (its client then reconnects and joins again)
// or receive the next line sent to the room; the gateway's log says how
// many it closed. The time from Redis answering again until every socket
// is closed and a new socket's line goes round the workers is reported;
// CHANNELS_RECOVERY_ROUNDS=5 repeats the restart to measure it.
func TestChatRedisRestartedEmpty(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the chat binary")
	}
	rounds := 1
	if n, err := strconv.Atoi(os.Getenv("CHANNELS_RECOVERY_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	srv := testenv.StartRedis(t)
	layerURL := srv.URL + "?prefix=" + strings.TrimSuffix(testenv.Prefix("chatrs"), ":")
	bin := testenv.GoBuild(t, "./examples/chat")
	port := testenv.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	gw := startProcess(t, "gateway", bin, "gateway", "--layer", layerURL, "-p", fmt.Sprint(port))
	startProcess(t, "worker 1", bin, "runworker", "--layer", layerURL, "--threads", "4")
	startProcess(t, "worker 2", bin, "runworker", "--layer", layerURL, "--threads", "4")
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway did not listen on %s:\n%s", addr, gw.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx := t.Context()
	closedLog := regexp.MustCompile(`lost its data.* closed=(\d+)`)
	var recoveries []time.Duration
	for round := range rounds {
		room := fmt.Sprintf("r%d", round)
		socks := make([]*chatSocket, recoverySockets)
		for i := range socks {
			s, err := dialChat(ctx, addr, room, fmt.Sprintf("u%d", i))
			if err != nil {
				t.Fatalf("round %d: socket %d: %v\n%s", round, i, err, gw.String())
			}
			socks[i] = s
			defer s.c.CloseNow()
		}
		// Everyone is in the group once the first has seen the last join.
		last := Event{Type: "join", Room: room, User: fmt.Sprintf("u%d", recoverySockets-1)}
		if _, ok := waitUntil(10*time.Second, func() bool { return socks[0].saw(last) }); !ok {
			t.Fatalf("round %d: the room never filled", round)
		}

		srv.Stop()
		time.Sleep(2 * time.Second) // long enough for every retry to back off fully
		srv.Restart(t)
		answered := time.Now()

		// A new member joins and says one line: it goes round once
		// workers receive again and the group holds the new member.
		// A probe that connects before the gateway learns of the data loss
		// is closed with the others, and counted by the gateway.
		var probe *chatSocket
		probesClosed := 0
		lost := websocket.StatusCode(gateway.CloseLayerDataLost)
		line := Event{Type: "message", Room: room, User: "probe", Text: "after the restart"}
		workersAt, ok := waitUntil(15*time.Second, func() bool {
			if probe == nil || probe.closeCode() != -1 {
				if probe != nil && probe.closeCode() == lost {
					probesClosed++
				}
				p, err := dialChat(ctx, addr, room, "probe")
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					return false
				}
				probe = p
			}
			b, _ := json.Marshal(map[string]string{"text": line.Text})
			wctx, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			if probe.c.Write(wctx, websocket.MessageText, b) != nil {
				return false
			}
			_, got := waitUntil(300*time.Millisecond, func() bool { return probe.saw(line) })
			return got
		})
		if !ok {
			t.Fatalf("round %d: no line went round within 15 s of Redis answering again\n%s", round, gw.String())
		}
		defer probe.c.CloseNow()
		waitUntil(5*time.Second, func() bool {
			for _, s := range socks {
				if s.closeCode() == -1 && !s.saw(line) {
					return false
				}
			}
			return true
		})
		closed, received := 0, 0
		var lastClose time.Duration
		for i, s := range socks {
			switch code := s.closeCode(); {
			case code == websocket.StatusCode(gateway.CloseLayerDataLost):
				closed++
				s.mu.Lock()
				lastClose = max(lastClose, s.endAt.Sub(answered))
				s.mu.Unlock()
			case code == -1 && s.saw(line):
				received++
			default:
				t.Errorf("round %d: socket %d neither received the line after the restart nor was closed with %d (close code %d, -1: still open)", round, i, gateway.CloseLayerDataLost, code)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		if probe.closeCode() == lost {
			probesClosed++
		}
		reported := 0
		if ms := closedLog.FindAllStringSubmatch(gw.String(), -1); len(ms) > 0 {
			reported, _ = strconv.Atoi(ms[len(ms)-1][1])
		}
		if reported != closed+probesClosed {
			t.Errorf("round %d: the gateway reports %d sockets closed; %d were closed with %d (%d of them probes)\n%s", round, reported, closed+probesClosed, gateway.CloseLayerDataLost, probesClosed, gw.String())
		}
		rec := max(workersAt.Sub(answered), lastClose)
		recoveries = append(recoveries, rec)
		t.Logf("round %d: %d sockets closed with %d (the last %v after Redis answered), %d received the next line; a new member's line went round %v after Redis answered", round, closed, gateway.CloseLayerDataLost, lastClose.Round(time.Millisecond), received, workersAt.Sub(answered).Round(time.Millisecond))
		for _, s := range socks {
			s.c.CloseNow()
		}
		probe.c.CloseNow()
	}
	slices.Sort(recoveries)
	t.Logf("recovery after Redis answered over %d restarts: p50 %v, max %v", len(recoveries), recoveries[len(recoveries)/2].Round(time.Millisecond), recoveries[len(recoveries)-1].Round(time.Millisecond))
}

// waitUntil polls cond every 10 ms until it holds or d passes.
func waitUntil(d time.Duration, cond func() bool) (time.Time, bool) {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return time.Now(), true
		}
		if time.Now().After(deadline) {
			return time.Time{}, false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
