package gateway_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gochannels/channels/channelstest"
	"github.com/gochannels/channels/internal/testenv"
)

// procKiB reads a "<field>: <n> kB" line of /proc/<pid>/status.
func procKiB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s line %q: %v", field, line, err)
			}
			return n
		}
	}
	t.Fatalf("no %s line in /proc/%d/status", field, pid)
	return 0
}

// A frame far over MaxMessageSize (16 MiB against the default 1 MiB) is
// refused with 1009 while the gateway's resident set grows by at most
// 2 MiB: the message is read in fixed chunks up to the limit, not into a
// buffer that doubles past it. The gateway is a separate process built
// without the race detector (examples/loadapp runserver, default limits),
// so that its peak resident set (VmHWM, reset just before the frame) is
// its own.
func TestOversizedFrameMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	if testing.Short() {
		t.Skip("builds and runs examples/loadapp")
	}
	bin := testenv.GoBuild(t, "./examples/loadapp")
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	var out testenv.Output
	cmd := exec.Command(bin, "runserver", addr, "--nodelay")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("loadapp output:\n%s", out.String())
		}
	})
	testenv.WaitHTTP(t, "http://"+addr+"/http/", 60*time.Second, out.String)
	pid := cmd.Process.Pid

	open := func() (net.Conn, *bufio.Reader) {
		c, err := net.DialTimeout("tcp", addr, wait)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		br := bufio.NewReader(c)
		io.WriteString(c, "GET /echo/ HTTP/1.1\r\nHost: "+addr+"\r\nOrigin: http://"+addr+"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("handshake: %v %v", resp, err)
		}
		return c, br
	}
	raw := func(c net.Conn, br *bufio.Reader) *rawConn { return &rawConn{t: t, c: c, br: br} }

	// Warm up: echo a few ordinary frames, then open the socket that
	// will send the oversized frame.
	wc, wbr := open()
	for range 20 {
		wc.Write(clientFrame(0x1, []byte(strings.Repeat("w", 16<<10))))
		if op, _ := raw(wc, wbr).readFrame(); op&0x0f != 0x1 {
			t.Fatalf("echo opcode %#x", op)
		}
	}
	c, br := open()
	time.Sleep(200 * time.Millisecond)
	// Writing 5 resets VmHWM to the current resident set.
	if err := os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0); err != nil {
		t.Skipf("cannot reset the peak resident set: %v", err)
	}
	before := procKiB(t, pid, "VmRSS")

	const size = 16 << 20
	head := []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // binary, masked with a zero key
	binary.BigEndian.PutUint64(head[2:10], size)
	go func() {
		if _, err := c.Write(head); err != nil {
			return
		}
		zeros := make([]byte, 64<<10)
		for sent := 0; sent < size; sent += len(zeros) {
			if _, err := c.Write(zeros); err != nil {
				return // the server closed the connection, as it should
			}
		}
	}()
	op, p := raw(c, br).readFrame()
	if op&0x0f != 0x8 || len(p) < 2 {
		t.Fatalf("got opcode %#x %q, want a close frame", op, p)
	}
	if code := binary.BigEndian.Uint16(p); code != 1009 {
		t.Fatalf("closed with %d, want 1009", code)
	}
	time.Sleep(200 * time.Millisecond)
	peak := procKiB(t, pid, "VmHWM")
	t.Logf("gateway resident set: %d KiB before, peak %d KiB while refusing a 16 MiB frame: +%d KiB", before, peak, peak-before)
	if peak-before > 2<<10 {
		t.Fatalf("the resident set grew by %d KiB, more than 2 MiB", peak-before)
	}
}

// Messages longer than the chunks they are read in arrive whole: text with
// a character cut by a chunk boundary, and bytes; invalid UTF-8 past the
// first chunk still closes with 1007.
func TestMessagesSpanningReadChunks(t *testing.T) {
	rec := newRecorder()
	srv := channelstest.NewServer(t, recordingRouter(rec))
	ws := srv.DialWS("/")
	text := strings.Repeat("a", 32<<10-1) + "é" + strings.Repeat("ü", 40<<10) // é straddles byte 32 768
	ws.SendText(text)
	if got := rec.next(t, "websocket.receive").Content.String("text"); got != text {
		t.Fatalf("text of %d bytes arrived as %d bytes", len(text), len(got))
	}
	bin := make([]byte, 100<<10+7)
	for i := range bin {
		bin[i] = byte(i * 7)
	}
	ws.SendBytes(bin)
	if got := rec.next(t, "websocket.receive").Content.Bytes("bytes"); !bytes.Equal(got, bin) {
		t.Fatalf("bytes of %d arrived as %d, different", len(bin), len(got))
	}
	ws.SendText(strings.Repeat("a", 70<<10) + "\xff")
	if got := ws.WaitClosed(); got != 1007 {
		t.Fatalf("invalid UTF-8 after 70 KiB closed with %d, want 1007", got)
	}
}
