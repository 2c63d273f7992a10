package loadtest_test

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gochannels/channels/internal/loadtest"
)

// nearestRank is the reference percentile: the smallest sample with at
// least q of all samples at or below it.
func nearestRank(sorted []time.Duration, q float64) time.Duration {
	rank := int(math.Ceil(q * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func TestHistogramPercentilesMatchSortedSamples(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name string
		gen  func() time.Duration
	}{
		// Log-uniform from 1µs to 10s: every bucket scale is exercised.
		{"log-uniform", func() time.Duration {
			return time.Duration(math.Exp(math.Log(1e3) + rng.Float64()*(math.Log(1e10)-math.Log(1e3))))
		}},
		// A tight cluster plus a long tail, like real latencies.
		{"cluster+tail", func() time.Duration {
			if rng.IntN(100) == 0 {
				return time.Duration(rng.Int64N(int64(2 * time.Second)))
			}
			return 500*time.Microsecond + time.Duration(rng.NormFloat64()*float64(50*time.Microsecond))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h loadtest.Histogram
			samples := make([]time.Duration, 200_000)
			var sum time.Duration
			for i := range samples {
				samples[i] = max(tc.gen(), 0)
				sum += samples[i]
				h.Record(samples[i])
			}
			slices.Sort(samples)
			if got := h.Count(); got != int64(len(samples)) {
				t.Fatalf("Count = %d, want %d", got, len(samples))
			}
			if h.Min() != samples[0] || h.Max() != samples[len(samples)-1] {
				t.Errorf("Min, Max = %v, %v; want exactly %v, %v", h.Min(), h.Max(), samples[0], samples[len(samples)-1])
			}
			if want := sum / time.Duration(len(samples)); h.Mean() != want {
				t.Errorf("Mean = %v, want %v", h.Mean(), want)
			}
			for _, q := range []float64{0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
				want := nearestRank(samples, q)
				got := h.Percentile(q)
				if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.005 {
					t.Errorf("Percentile(%v) = %v, want %v within 0.5%% (off by %.2f%%)", q, got, want, 100*rel)
				}
			}
		})
	}
}

func TestHistogramSmallValuesAreExact(t *testing.T) {
	var h loadtest.Histogram
	for v := range 256 {
		h.Record(time.Duration(v))
	}
	for _, v := range []int{1, 17, 128, 200, 255} {
		q := float64(v+1) / 256 // exactly v+1 of the 256 values are <= v
		if got := h.Percentile(q); got != time.Duration(v) {
			t.Errorf("Percentile(%v) = %v, want %v", q, got, time.Duration(v))
		}
	}
}

func TestHistogramEmptyAndOutOfRange(t *testing.T) {
	var h loadtest.Histogram
	if h.Percentile(0.5) != 0 || h.Max() != 0 || h.Min() != 0 || h.Mean() != 0 || h.Summary().Count != 0 {
		t.Fatalf("empty histogram: Percentile %v Max %v Min %v Mean %v", h.Percentile(0.5), h.Max(), h.Min(), h.Mean())
	}
	h.Record(-time.Second)  // a clock step: recorded as zero
	h.Record(2 * time.Hour) // beyond the bucket range: clamped, Max exact
	if h.Min() != 0 {
		t.Errorf("Min = %v after a negative sample, want 0", h.Min())
	}
	if h.Max() != 2*time.Hour || h.Percentile(1) != 2*time.Hour {
		t.Errorf("Max = %v, Percentile(1) = %v; want 2h exactly", h.Max(), h.Percentile(1))
	}
	if p := h.Percentile(0.99); p < 15*time.Minute || p > 2*time.Hour {
		t.Errorf("Percentile(0.99) = %v, want the clamped top bucket (<= Max)", p)
	}
}

func TestHistogramConcurrentRecord(t *testing.T) {
	var h loadtest.Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 10_000 {
				h.Record(time.Duration(g*10_000+i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if h.Count() != 80_000 {
		t.Fatalf("Count = %d, want 80000", h.Count())
	}
	if h.Min() != 0 || h.Max() != 79_999*time.Microsecond {
		t.Errorf("Min, Max = %v, %v; want 0, 79.999ms", h.Min(), h.Max())
	}
	if p := h.Percentile(0.5); math.Abs(float64(p-40*time.Millisecond)) > 0.005*float64(40*time.Millisecond) {
		t.Errorf("median = %v, want 40ms", p)
	}
}

func TestSummaryInMilliseconds(t *testing.T) {
	var h loadtest.Histogram
	h.Record(1500 * time.Microsecond)
	s := h.Summary()
	if s.Count != 1 || s.Min != 1.5 || s.Max != 1.5 || math.Abs(s.P50-1.5) > 0.01 {
		t.Errorf("Summary = %+v, want every figure 1.5 ms", s)
	}
}
