package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// ExitCode returns the exit status for the error a command returned, and
// writes the error to stderr: 0 for nil or a help request, 2 for a usage
// error (an unknown command or flag, a bad flag value or argument; the flag
// parser has already printed what was wrong and the usage), 1 for any other
// error, written as "error: " and the error's text.
func ExitCode(stderr io.Writer, err error) int {
	return exitCode(stderr, err)
}

// errUsagePrinted marks a usage error the flag package has already printed.
var errUsagePrinted = errors.New("usage error printed")

// flagError turns an error of flag.FlagSet.Parse into a usage error.
func flagError(err error) error {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %w: %w", errUsage, errUsagePrinted, err)
}
