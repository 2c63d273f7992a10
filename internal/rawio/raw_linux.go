package rawio

import (
	"syscall"
	"unsafe"
)

// Read is read(2) on a non-blocking descriptor, made as a raw system call.
func Read(fd int, b []byte) (int, error) { return call(syscall.SYS_READ, fd, b) }

// Write is write(2) on a non-blocking descriptor, made as a raw system call.
func Write(fd int, b []byte) (int, error) { return call(syscall.SYS_WRITE, fd, b) }

// call makes the read or write trap on fd and b as a raw system call.
func call(trap uintptr, fd int, b []byte) (int, error) {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	n, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(p), uintptr(len(b)))
	if e != 0 {
		return -1, e
	}
	return int(n), nil
}
