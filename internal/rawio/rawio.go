// Package rawio makes the system calls of non-blocking socket reads and
// writes without telling the Go scheduler that the goroutine is in a system
// call.
//
// A read or write on a non-blocking socket never waits: it returns what the
// kernel had or took, or EAGAIN. The runtime nevertheless treats every
// system call as one that may block: when the monitor thread (sysmon) sees a
// processor still in the same system call on two of its ticks, 20 µs apart,
// it hands the processor to another thread, and for the next millisecond it
// keeps ticking every 20 µs. On loopback a write does the receiver's TCP
// work too and often takes longer than that, so a busy server kept sysmon
// ticking and threads handing processors over all the time (7–10% of the
// CPU of a gateway or a worker over Redis). Raw system calls avoid both.
//
// Read and Write are the raw calls where the platform has them (Linux) and
// the ordinary ones elsewhere; Wrap gives a TCP connection whose Read and
// Write use them, waiting in the network poller as net.Conn does.
package rawio
