package delay

import (
	"maps"
	"sync"
	"time"
)

// Stats are a server's counters since it was created.
type Stats struct {
	Received      uint64            // messages taken from "asgi.delay"
	Stored        uint64            // messages committed to the store
	Duplicates    uint64            // messages whose ID was already in the store: confirmed, not stored again
	Rejected      map[Reason]uint64 // invalid messages, by reason: logged and skipped
	Lost          uint64            // received messages Run could not store before it returned (the database was unreachable)
	Confirmed     uint64            // confirmations sent to a SendConfirmed producer (stored or rejected)
	Sent          uint64            // due messages sent to their channel
	Rescheduled   uint64            // due sends refused with ErrChannelFull and rescheduled RetryFull later
	SendFailures  uint64            // due sends that failed for another reason and were rescheduled
	Dropped       uint64            // due messages removed unsent because the layer can never take them (too large)
	StoreErrors   uint64            // failed store operations (each retried)
	ReceiveErrors uint64            // failed receives from the layer (each retried)
	Lateness      Lateness          // how long after their due time messages were sent
}

// RejectedTotal returns the number of rejected messages, over all reasons.
func (s Stats) RejectedTotal() uint64 {
	var n uint64
	for _, v := range s.Rejected {
		n += v
	}
	return n
}

// Lateness summarises how late the sends of due messages were: the time
// from a message's due time to the return of its successful Send. The
// percentiles are exact to 100 µs below 100 ms and to 10 ms below 10 s.
type Lateness struct {
	Count uint64        // sends measured
	Mean  time.Duration // average
	P50   time.Duration // median
	P99   time.Duration // 99th percentile
	Max   time.Duration // worst
}

// latencyHist is a fixed-size histogram: 1000 buckets of 100 µs up to
// 100 ms, 990 of 10 ms up to 10 s, and one for everything later.
type latencyHist struct {
	mu      sync.Mutex
	buckets [1000 + 990 + 1]uint64
	count   uint64
	sum     time.Duration
	max     time.Duration
}

func (h *latencyHist) add(d time.Duration) {
	d = max(d, 0)
	var i int
	switch {
	case d < 100*time.Millisecond:
		i = int(d / (100 * time.Microsecond))
	case d < 10*time.Second:
		i = 1000 + int((d-100*time.Millisecond)/(10*time.Millisecond))
	default:
		i = len(h.buckets) - 1
	}
	h.mu.Lock()
	h.buckets[i]++
	h.count++
	h.sum += d
	h.max = max(h.max, d)
	h.mu.Unlock()
}

// upper returns the upper bound of bucket i.
func (h *latencyHist) upper(i int) time.Duration {
	switch {
	case i < 1000:
		return time.Duration(i+1) * 100 * time.Microsecond
	case i < len(h.buckets)-1:
		return 100*time.Millisecond + time.Duration(i-1000+1)*10*time.Millisecond
	}
	return h.max
}

func (h *latencyHist) summary() Lateness {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := Lateness{Count: h.count, Max: h.max}
	if h.count == 0 {
		return l
	}
	l.Mean = h.sum / time.Duration(h.count)
	l.P50 = min(h.quantile(0.50), h.max)
	l.P99 = min(h.quantile(0.99), h.max)
	return l
}

// quantile returns the upper bound of the bucket holding the q-quantile.
// h.mu is held.
func (h *latencyHist) quantile(q float64) time.Duration {
	rank := uint64(q*float64(h.count-1)) + 1
	var seen uint64
	for i, n := range h.buckets {
		seen += n
		if seen >= rank {
			return h.upper(i)
		}
	}
	return h.max
}

// rejections counts rejected messages by reason.
type rejections struct {
	mu sync.Mutex
	m  map[Reason]uint64
}

func (r *rejections) add(reason Reason) {
	r.mu.Lock()
	if r.m == nil {
		r.m = make(map[Reason]uint64)
	}
	r.m[reason]++
	r.mu.Unlock()
}

func (r *rejections) snapshot() map[Reason]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := maps.Clone(r.m)
	if out == nil {
		out = map[Reason]uint64{}
	}
	return out
}

// LatenessHistogram returns how late the sends of due messages were as a
// cumulative histogram: for each of bounds (ascending), the sends that were
// at most that late, plus the number of sends measured and their summed
// lateness. A bound is exact when it is a multiple of 100 µs below 100 ms or
// of 10 ms below 10 s; other bounds count up to the next such multiple
// below them.
func (s *Server) LatenessHistogram(bounds []time.Duration) (cumulative []uint64, count uint64, sum time.Duration) {
	h := &s.lateness
	h.mu.Lock()
	defer h.mu.Unlock()
	cumulative = make([]uint64, len(bounds))
	var seen uint64
	b := 0
	for i, n := range h.buckets[:len(h.buckets)-1] {
		for b < len(bounds) && h.upper(i) > bounds[b] {
			cumulative[b] = seen
			b++
		}
		seen += n
	}
	for ; b < len(bounds); b++ {
		cumulative[b] = seen
	}
	return cumulative, h.count, h.sum
}
