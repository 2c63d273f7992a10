//go:build !unix

package gateway_test

// processCPU returns 0 where getrusage is not available.
func processCPU() int64 { return 0 }
