// Command channels-layerbench measures the raw throughput of the Redis
// channel layer: many goroutines send messages while many others receive
// them, for a fixed time, and the messages received per second are
// reported. With -baseline it first runs redis-benchmark's ZADD test with
// pipelining against the same server, the ceiling a send (at least one
// ZADD) cannot beat, and reports the ratio.
//
// Usage:
//
//	channels-layerbench [-url redis://127.0.0.1:6379/0] [-senders 32] [-receivers 32]
//	                    [-duration 10s] [-mode normal|process|raw] [-channels 4]
//	                    [-size 64] [-baseline] [-rounds 3] [-cpuprofile cpu.out]
//
// In normal mode receivers call Receive on ordinary channels (what workers
// do); in process mode they call ReceivePrefix on one process prefix and
// senders send to 1000 channels under it (what an interface server does
// with its connections' reply channels). In raw mode the same goroutines
// use a bare Redis client: senders ZADD, receivers ZPOPMIN (BZPOPMIN when
// empty), the two round trips of a send and a receive without the layer's
// work, which shows what the client library itself costs. Keys go under a
// random prefix and are deleted at the end.
//
// Besides the rate, every run reports where the time went over the
// measured window: the CPU of this process and of redis-server (from its
// INFO cpu, so only meaningful on a server nobody else uses), per second
// and per message, and the Redis commands that took the most of the
// server's time per message (INFO commandstats). The baseline reports the
// CPU of redis-server and redis-benchmark likewise. GOMAXPROCS (the
// environment variable) sets the cores this process may use: on a small
// machine shared with redis-server, GOMAXPROCS=1 leaves it a core as
// redis-benchmark (single-threaded) does.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gochannels/channels"
	"github.com/gochannels/channels/redislayer"
	"github.com/redis/rueidis"
)

func main() {
	defaultURL := os.Getenv("REDIS_URL")
	if defaultURL == "" {
		defaultURL = redislayer.DefaultURL
	}
	var (
		rawURL     = flag.String("url", defaultURL, "Redis URL (layer options may be given as query parameters)")
		senders    = flag.Int("senders", 32, "sending goroutines")
		receivers  = flag.Int("receivers", 32, "receiving goroutines")
		duration   = flag.Duration("duration", 10*time.Second, "how long to measure")
		mode       = flag.String("mode", "normal", "normal (Receive on ordinary channels), process (ReceivePrefix), or raw (a bare client's ZADD and ZPOPMIN, for comparison)")
		nchannels  = flag.Int("channels", 4, "ordinary channels (normal mode)")
		size       = flag.Int("size", 64, "text bytes per message")
		baseline   = flag.Bool("baseline", false, "also run redis-benchmark -t zadd -P 16 against the same server")
		cpuprofile = flag.String("cpuprofile", "", "write a CPU profile of the first measured run to this file")
		rounds     = flag.Int("rounds", 1, "alternate the baseline and the layer this many times and report medians (the machine's load varies)")
	)
	flag.Parse()
	if *mode != "normal" && *mode != "process" && *mode != "raw" {
		log.Fatalf("-mode must be normal, process or raw")
	}

	var zadds, rates, ratios []float64
	for round := range *rounds {
		var zaddRate float64
		if *baseline {
			r, usage, err := redisBenchmark(*rawURL)
			if err != nil {
				log.Fatalf("redis-benchmark: %v", err)
			}
			zaddRate = r
			zadds = append(zadds, r)
			fmt.Printf("round %d: redis-benchmark -t zadd -P 16: %.0f ZADD/s (%s)\n", round+1, r, usage)
		}
		profile := ""
		if round == 0 {
			profile = *cpuprofile
		}
		run := run
		if *mode == "raw" {
			run = runRaw
		}
		res, err := run(*rawURL, *mode, *senders, *receivers, *nchannels, *size, *duration, profile)
		if err != nil {
			log.Fatal(err)
		}
		rates = append(rates, res.rate)
		fmt.Printf("round %d: layer (%s, %d senders, %d receivers, GOMAXPROCS %d): %.0f messages/s sent and received\n",
			round+1, *mode, *senders, *receivers, runtime.GOMAXPROCS(0), res.rate)
		fmt.Printf("round %d:   %s\n", round+1, res.usage)
		if zaddRate > 0 {
			ratios = append(ratios, res.rate/zaddRate)
			fmt.Printf("round %d: ratio to pipelined ZADD: %.2f\n", round+1, res.rate/zaddRate)
		}
	}
	if *rounds > 1 {
		fmt.Printf("median over %d rounds: layer %.0f messages/s", *rounds, median(rates))
		if len(ratios) > 0 {
			fmt.Printf(", ZADD %.0f/s, ratio %.2f", median(zadds), median(ratios))
		}
		fmt.Println()
	}
}

// result is one measured run.
type result struct {
	rate  float64 // messages received per second
	usage string  // where the time went
}

// snapshot is what a run's CPU accounting compares: this process's CPU
// time and the server's, and the server's time per command.
type snapshot struct {
	at    time.Time
	self  time.Duration
	redis time.Duration
	cmds  map[string]cmdStat
}

type cmdStat struct {
	calls int64
	usec  int64
}

// takeSnapshot reads this process's CPU time and the server's INFO cpu and
// commandstats.
func takeSnapshot(c rueidis.Client) snapshot {
	s := snapshot{at: time.Now(), self: processCPU(), cmds: map[string]cmdStat{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := c.Do(ctx, c.B().Info().Section("cpu").Section("commandstats").Build()).ToString()
	if err != nil {
		return s
	}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "used_cpu_user:"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			s.redis += time.Duration(f * float64(time.Second))
		} else if v, ok := strings.CutPrefix(line, "used_cpu_sys:"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			s.redis += time.Duration(f * float64(time.Second))
		} else if rest, ok := strings.CutPrefix(line, "cmdstat_"); ok {
			name, fields, _ := strings.Cut(rest, ":")
			var st cmdStat
			for _, kv := range strings.Split(fields, ",") {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "calls":
					st.calls, _ = strconv.ParseInt(v, 10, 64)
				case "usec":
					st.usec, _ = strconv.ParseInt(v, 10, 64)
				}
			}
			s.cmds[name] = st
		}
	}
	return s
}

// usage describes the CPU spent between a and b for n messages.
func usage(a, b snapshot, n int64) string {
	el := b.at.Sub(a.at).Seconds()
	if n <= 0 || el <= 0 {
		return "no messages"
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
	self, redis := b.self-a.self, b.redis-a.redis
	out := fmt.Sprintf("CPU: this process %.2f cores (%.2f µs/message), redis-server %.2f cores (%.2f µs/message)",
		self.Seconds()/el, per(self), redis.Seconds()/el, per(redis))
	type cmd struct {
		name        string
		usec, calls int64
	}
	var cmds []cmd
	for name, st := range b.cmds {
		d := cmd{name, st.usec - a.cmds[name].usec, st.calls - a.cmds[name].calls}
		if d.usec > 0 && name != "info" {
			cmds = append(cmds, d)
		}
	}
	slices.SortFunc(cmds, func(x, y cmd) int { return int(y.usec - x.usec) })
	// EXEC and EVALSHA include the time of the commands they run, which
	// are also counted on their own.
	out += "; Redis µs/message by command:"
	for i, c := range cmds {
		if i == 4 {
			break
		}
		out += fmt.Sprintf(" %s %.2f (%.1f messages/call)", c.name, float64(c.usec)/float64(n), float64(n)/float64(max(c.calls, 1)))
	}
	return out
}

// infoClient connects to the first host of rawURL, for INFO.
func infoClient(rawURL string) (rueidis.Client, error) {
	cfg, err := redislayer.ParseURL(rawURL)
	if err != nil {
		return nil, err
	}
	opt, err := rueidis.ParseURL(cfg.Hosts[0])
	if err != nil {
		return nil, err
	}
	opt.DisableCache, opt.ForceSingleClient = true, true
	return rueidis.NewClient(opt)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func run(rawURL, mode string, senders, receivers, nchannels, size int, d time.Duration, cpuprofile string) (result, error) {
	cfg, err := redislayer.ParseURL(rawURL)
	if err != nil {
		return result{}, err
	}
	ic, err := infoClient(rawURL)
	if err != nil {
		return result{}, err
	}
	defer ic.Close()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	cfg.Prefix = "layerbench-" + hex.EncodeToString(b) + ":"
	if cfg.Capacity == 0 {
		cfg.Capacity = 10000
	}
	if cfg.ReceiveConns == 0 {
		cfg.ReceiveConns = receivers + 4
	}
	ctx := context.Background()
	l, err := redislayer.New(ctx, cfg)
	if err != nil {
		return result{}, err
	}
	defer l.Close()
	defer func() { _ = l.Flush(context.Background()) }()

	msg := channels.Content{
		"reply_channel": "websocket.send.abcdefghijkl!mnopqrstuvwx",
		"path":          "/chat/lobby/",
		"order":         int64(12),
		"text":          strings.Repeat("x", size),
	}
	var names []string
	const prefix = "websocket.send.bench!"
	if mode == "normal" {
		for i := range nchannels {
			names = append(names, fmt.Sprintf("bench.work.%d", i))
		}
	} else {
		for range 1000 {
			n, err := l.NewChannel(ctx, prefix)
			if err != nil {
				return result{}, err
			}
			names = append(names, n)
		}
	}

	var (
		received, sent, full atomic.Int64
		errs                 atomic.Int64
		wg                   sync.WaitGroup
	)
	rctx, stopReceivers := context.WithCancel(ctx)
	defer stopReceivers()
	for range receivers {
		wg.Go(func() {
			for rctx.Err() == nil {
				var err error
				if mode == "normal" {
					_, _, err = l.Receive(rctx, names...)
				} else {
					_, _, err = l.ReceivePrefix(rctx, prefix)
				}
				if err == nil {
					received.Add(1)
				} else if rctx.Err() == nil {
					errs.Add(1)
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
	sctx, stopSenders := context.WithCancel(ctx)
	defer stopSenders()
	var swg sync.WaitGroup
	for s := range senders {
		swg.Go(func() {
			for i := s; sctx.Err() == nil; i++ {
				err := l.Send(sctx, names[i%len(names)], msg)
				switch {
				case err == nil:
					sent.Add(1)
				case errors.Is(err, channels.ErrChannelFull):
					full.Add(1)
					time.Sleep(time.Millisecond)
				case sctx.Err() == nil:
					errs.Add(1)
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}

	time.Sleep(time.Second) // warm up
	stopProfile, err := startProfile(cpuprofile)
	if err != nil {
		return result{}, err
	}
	defer stopProfile()
	s0, r0 := takeSnapshot(ic), received.Load()
	time.Sleep(d)
	s1, r1 := takeSnapshot(ic), received.Load()
	el := s1.at.Sub(s0.at)
	stopSenders()
	swg.Wait()
	time.Sleep(200 * time.Millisecond)
	stopReceivers()
	wg.Wait()
	if n := errs.Load(); n > 0 {
		log.Printf("%d calls failed", n)
	}
	if n := full.Load(); n > 0 {
		log.Printf("%d sends found the channel full (the receivers fell behind)", n)
	}
	return result{rate: float64(r1-r0) / el.Seconds(), usage: usage(s0, s1, r1-r0)}, nil
}

// redisBenchmark runs redis-benchmark's ZADD test with 16 commands per
// pipeline against the server of rawURL and returns ZADDs per second and
// the CPU redis-server and redis-benchmark used.
func redisBenchmark(rawURL string) (float64, string, error) {
	u, err := url.Parse(strings.Split(rawURL, ",")[0])
	if err != nil {
		return 0, "", err
	}
	args := []string{"-t", "zadd", "-P", "16", "-q", "-n", "1000000", "-c", "50"}
	if u.Scheme == "unix" {
		args = append(args, "-s", u.Path)
	} else {
		args = append(args, "-h", u.Hostname())
		if p := u.Port(); p != "" {
			args = append(args, "-p", p)
		}
	}
	if pw, ok := u.User.Password(); ok {
		args = append(args, "-a", pw)
	}
	if db := strings.Trim(u.Path, "/"); db != "" && u.Scheme != "unix" {
		args = append(args, "--dbnum", db)
	}
	ic, err := infoClient(rawURL)
	if err != nil {
		return 0, "", err
	}
	defer ic.Close()
	s0 := takeSnapshot(ic)
	cmd := exec.Command("redis-benchmark", args...)
	out, err := cmd.Output()
	if err != nil {
		return 0, "", err
	}
	s1 := takeSnapshot(ic)
	el := s1.at.Sub(s0.at).Seconds()
	bench := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	use := fmt.Sprintf("CPU: redis-server %.2f cores, redis-benchmark %.2f cores", (s1.redis-s0.redis).Seconds()/el, bench.Seconds()/el)
	// "ZADD: 123456.79 requests per second, p50=..."
	for _, line := range strings.Split(strings.ReplaceAll(string(out), "\r", "\n"), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "ZADD:"); ok && strings.Contains(rest, "requests per second") {
			if f := strings.Fields(rest); len(f) > 0 {
				r, err := strconv.ParseFloat(f[0], 64)
				return r, use, err
			}
		}
	}
	return 0, "", fmt.Errorf("no ZADD figure in its output: %q", out)
}

// runRaw is run with a bare client: ZADD to send, ZPOPMIN (then BZPOPMIN
// on a dedicated connection when empty) to receive.
func runRaw(rawURL, _ string, senders, receivers, nchannels, size int, d time.Duration, cpuprofile string) (result, error) {
	cfg, err := redislayer.ParseURL(rawURL)
	if err != nil {
		return result{}, err
	}
	opt, err := rueidis.ParseURL(cfg.Hosts[0])
	if err != nil {
		return result{}, err
	}
	opt.DisableCache = true
	opt.ForceSingleClient = true
	opt.MaxFlushDelay = 20 * time.Microsecond
	if cfg.FlushDelay != 0 {
		opt.MaxFlushDelay = max(cfg.FlushDelay, 0)
	}
	opt.ReadBufferEachConn, opt.WriteBufferEachConn = 64<<10, 64<<10
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	prefix := "layerbench-raw-" + hex.EncodeToString(b) + ":"
	keys := make([]string, nchannels)
	for i := range keys {
		keys[i] = fmt.Sprintf("%sbench.work.%d", prefix, i)
	}
	defer func() {
		c.Do(context.Background(), c.B().Del().Key(keys...).Build())
	}()
	payload := strings.Repeat("x", size+100)
	var received atomic.Int64
	var wg sync.WaitGroup
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for r := range receivers {
		wg.Go(func() {
			key := keys[r%len(keys)]
			for ctx.Err() == nil {
				zs, err := c.Do(ctx, c.B().Zpopmin().Key(key).Build()).AsZScores()
				if err == nil && len(zs) > 0 {
					received.Add(1)
					continue
				}
				bctx, cancel := context.WithTimeout(ctx, time.Second)
				if r, err := c.Do(bctx, c.B().Bzpopmin().Key(key).Timeout(0.5).Build()).ToArray(); err == nil && len(r) == 3 {
					received.Add(1)
				}
				cancel()
			}
		})
	}
	for s := range senders {
		wg.Go(func() {
			var n uint64
			for i := s; ctx.Err() == nil; i++ {
				n++
				member := fmt.Sprintf("%d-%d-%s", s, n, payload)
				c.Do(ctx, c.B().Zadd().Key(keys[i%len(keys)]).ScoreMember().ScoreMember(float64(time.Now().UnixMicro())/1e6, member).Build())
			}
		})
	}
	time.Sleep(time.Second)
	stopProfile, err := startProfile(cpuprofile)
	if err != nil {
		return result{}, err
	}
	defer stopProfile()
	s0, r0 := takeSnapshot(c), received.Load()
	time.Sleep(d)
	s1, r1 := takeSnapshot(c), received.Load()
	el := s1.at.Sub(s0.at)
	stop()
	wg.Wait()
	return result{rate: float64(r1-r0) / el.Seconds(), usage: usage(s0, s1, r1-r0)}, nil
}

// startProfile writes a CPU profile to path until stop is called; with no
// path it does nothing.
func startProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
