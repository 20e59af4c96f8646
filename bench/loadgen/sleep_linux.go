//go:build linux

package main

import (
	"os"
	"syscall"
	"time"
	"unsafe"
)

// newSleeper returns a sleepUntil that waits on a timerfd read through Go's netpoller. Go's own
// timers wake up through the netpoller's epoll timeout, which has millisecond granularity, so
// time.Sleep wakes ~0.5 ms late on average, as much as the latency being measured; nanosleep(2)
// would be precise but would hold the only P (GOMAXPROCS 1 under taskset) while answers wait.
// A timerfd becomes readable at the due time (tens of µs late in a VM) and the goroutine parks
// meanwhile, so answers keep being read.
func newSleeper() func(time.Time) {
	const clockMonotonic, flags = 1, syscall.O_NONBLOCK | syscall.O_CLOEXEC
	fd, _, errno := syscall.Syscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, flags, 0)
	if errno != 0 {
		return sleepUntil
	}
	f := os.NewFile(fd, "timerfd") // non-blocking: served by the netpoller
	rc, err := f.SyscallConn()
	if err != nil {
		return sleepUntil
	}
	return func(due time.Time) {
		armed := false
		rc.Control(func(fd uintptr) {
			d := time.Until(due)
			if d <= 0 {
				return
			}
			spec := [4]int64{0, 0, int64(d / time.Second), int64(d % time.Second)} // struct itimerspec, one-shot
			_, _, errno := syscall.Syscall6(syscall.SYS_TIMERFD_SETTIME, fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0)
			armed = errno == 0
		})
		if !armed {
			sleepUntil(due)
			return
		}
		var expirations [8]byte
		f.Read(expirations[:])
	}
}
