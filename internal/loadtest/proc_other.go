//go:build !linux

package loadtest

import (
	"errors"
	"time"
)

var errNoProc = errors.New("process statistics need Linux /proc")

// ReadRSS returns the resident set size of process pid in KiB. It needs
// Linux; elsewhere it returns an error.
func ReadRSS(pid int) (int64, error)                  { return 0, errNoProc }
func readCPU(pid int) (time.Duration, error)          { return 0, errNoProc }
func countFDs(pid int) (int, error)                   { return 0, errNoProc }
func processNoFile(pid int) (uint64, error)           { return 0, errNoProc }
func raiseNoFile(want uint64) (uint64, uint64, error) { return 0, 0, errNoProc }
func ephemeralPorts() (int, error)                    { return 0, errNoProc }
func selfCPU() time.Duration                          { return 0 }
