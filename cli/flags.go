package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// secondsFlag is a duration flag that takes whole or fractional seconds
// ("60", "2.5", as Daphne's flags did) or a Go duration ("90s", "2m").
type secondsFlag struct{ d *time.Duration }

func newSecondsFlag(d *time.Duration, def time.Duration) secondsFlag {
	*d = def
	return secondsFlag{d}
}

func (f secondsFlag) String() string {
	if f.d == nil {
		return ""
	}
	return strconv.FormatFloat(f.d.Seconds(), 'f', -1, 64)
}

func (f secondsFlag) Set(v string) error {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		*f.d = time.Duration(n * float64(time.Second))
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%q is neither seconds nor a duration like 90s", v)
	}
	*f.d = d
	return nil
}
