// Command channels-layerbench measures the raw throughput of the Redis
// channel layer: many goroutines send messages while many others receive
// them, for a fixed time, and the messages received per second are
// reported. With -baseline it first runs redis-benchmark's ZADD test with
// pipelining against the same server, the ceiling a send (one ZADD in a
// Lua script) cannot beat, and reports the ratio.
//
// Usage:
//
//	channels-layerbench [-url redis://127.0.0.1:6379/0] [-senders 32] [-receivers 32]
//	                    [-duration 10s] [-mode normal|process] [-channels 4]
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
			r, err := redisBenchmark(*rawURL)
			if err != nil {
				log.Fatalf("redis-benchmark: %v", err)
			}
			zaddRate = r
			zadds = append(zadds, r)
			fmt.Printf("round %d: redis-benchmark -t zadd -P 16: %.0f ZADD/s\n", round+1, r)
		}
		profile := ""
		if round == 0 {
			profile = *cpuprofile
		}
		run := run
		if *mode == "raw" {
			run = runRaw
		}
		rate, err := run(*rawURL, *mode, *senders, *receivers, *nchannels, *size, *duration, profile)
		if err != nil {
			log.Fatal(err)
		}
		rates = append(rates, rate)
		fmt.Printf("round %d: layer (%s, %d senders, %d receivers): %.0f messages/s sent and received\n", round+1, *mode, *senders, *receivers, rate)
		if zaddRate > 0 {
			ratios = append(ratios, rate/zaddRate)
			fmt.Printf("round %d: ratio to pipelined ZADD: %.2f\n", round+1, rate/zaddRate)
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

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func run(rawURL, mode string, senders, receivers, nchannels, size int, d time.Duration, cpuprofile string) (float64, error) {
	cfg, err := redislayer.ParseURL(rawURL)
	if err != nil {
		return 0, err
	}
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
		return 0, err
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
				return 0, err
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
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
	}
	r0, start := received.Load(), time.Now()
	time.Sleep(d)
	r1, el := received.Load(), time.Since(start)
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
	return float64(r1-r0) / el.Seconds(), nil
}

// redisBenchmark runs redis-benchmark's ZADD test with 16 commands per
// pipeline against the server of rawURL and returns ZADDs per second.
func redisBenchmark(rawURL string) (float64, error) {
	u, err := url.Parse(strings.Split(rawURL, ",")[0])
	if err != nil {
		return 0, err
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
	out, err := exec.Command("redis-benchmark", args...).Output()
	if err != nil {
		return 0, err
	}
	// "ZADD: 123456.79 requests per second, p50=..."
	for _, line := range strings.Split(strings.ReplaceAll(string(out), "\r", "\n"), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "ZADD:"); ok && strings.Contains(rest, "requests per second") {
			if f := strings.Fields(rest); len(f) > 0 {
				return strconv.ParseFloat(f[0], 64)
			}
		}
	}
	return 0, fmt.Errorf("no ZADD figure in its output: %q", out)
}

// runRaw is run with a bare client: ZADD to send, ZPOPMIN (then BZPOPMIN
// on a dedicated connection when empty) to receive.
func runRaw(rawURL, _ string, senders, receivers, nchannels, size int, d time.Duration, cpuprofile string) (float64, error) {
	cfg, err := redislayer.ParseURL(rawURL)
	if err != nil {
		return 0, err
	}
	opt, err := rueidis.ParseURL(cfg.Hosts[0])
	if err != nil {
		return 0, err
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
		return 0, err
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
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
	}
	r0, start := received.Load(), time.Now()
	time.Sleep(d)
	r1, el := received.Load(), time.Since(start)
	stop()
	wg.Wait()
	return float64(r1-r0) / el.Seconds(), nil
}
