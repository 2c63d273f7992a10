//go:build !unix

package main

import "time"

// processCPU returns 0 where getrusage is not available: CPU figures are
// then not reported.
func processCPU() time.Duration { return 0 }
