package loadtest

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram layout: log-linear buckets, HDR style. Values below 2^subBits
// nanoseconds get a bucket each; above that, every power of two is split
// into 2^subBits equal buckets, so any recorded value is known to within
// 1/2^subBits (0.8 %) of itself. Values are clamped to histMax (about 18
// minutes), far beyond any timeout the tool uses; Max stays exact.
const (
	subBits  = 7
	subCount = 1 << subBits
	histMaxE = 40
	histMax  = int64(1)<<histMaxE - 1
	nBuckets = (histMaxE - subBits + 1) * subCount
)

// Histogram records durations in bounded memory (about 35 KB however many
// samples) and answers percentile queries with a relative error under 0.4 %.
// Record may be called from any number of goroutines concurrently; the
// query methods may run concurrently with Record and see a consistent-enough
// snapshot for progress lines (exact once recording has stopped).
// The zero value is ready to use.
type Histogram struct {
	counts [nBuckets]atomic.Int64
	n      atomic.Int64
	sum    atomic.Int64
	min    atomic.Int64 // stored as value+1 so that zero means "unset"
	max    atomic.Int64
}

// bucketOf returns the index of the bucket holding v (v >= 0).
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits - 1
	return e*subCount + int(v>>e)
}

// bucketRange returns the smallest value of bucket i and its width.
func bucketRange(i int) (low, width int64) {
	if i < 2*subCount {
		return int64(i), 1
	}
	e := i/subCount - 1
	m := int64(i%subCount + subCount)
	return m << e, int64(1) << e
}

// Record adds one duration. Negative durations (a clock step between two
// hosts' wall clocks) are recorded as zero.
func (h *Histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur := h.min.Load()
		if (cur != 0 && v+1 >= cur) || h.min.CompareAndSwap(cur, v+1) {
			break
		}
	}
	h.sum.Add(v)
	if v > histMax {
		v = histMax
	}
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
}

// Count returns the number of recorded values.
func (h *Histogram) Count() int64 { return h.n.Load() }

// Min returns the smallest recorded value, or 0 when there is none.
func (h *Histogram) Min() time.Duration {
	if m := h.min.Load(); m > 0 {
		return time.Duration(m - 1)
	}
	return 0
}

// Max returns the largest recorded value, or 0 when there is none.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the arithmetic mean, or 0 when there is nothing recorded.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Percentile returns the nearest-rank q-quantile (q in [0, 1]): the smallest
// recorded value v such that at least q of all values are <= v, to within
// the bucket precision. Percentile(1) is the exact maximum; with nothing
// recorded it returns 0.
func (h *Histogram) Percentile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	if q >= 1 {
		return h.Max()
	}
	rank := int64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			low, width := bucketRange(i)
			v := low + (width-1)/2
			if mx := h.max.Load(); v > mx {
				v = mx
			}
			if mn := h.Min(); time.Duration(v) < mn {
				v = int64(mn)
			}
			return time.Duration(v)
		}
	}
	return h.Max()
}

// Summary returns the usual figures of h in milliseconds, ready for a report.
func (h *Histogram) Summary() Latency {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return Latency{
		Count: h.Count(),
		Min:   ms(h.Min()),
		Mean:  ms(h.Mean()),
		P50:   ms(h.Percentile(0.50)),
		P90:   ms(h.Percentile(0.90)),
		P99:   ms(h.Percentile(0.99)),
		P999:  ms(h.Percentile(0.999)),
		Max:   ms(h.Max()),
	}
}

// Latency is a histogram's summary in milliseconds, as it appears in reports.
type Latency struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}
