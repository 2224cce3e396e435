package cluster

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootClock reads CLOCK_BOOTTIME: a clock that never goes backwards and
// keeps counting while the machine is suspended, the clock the kernel fence
// compares its deadline with (bpf_ktime_get_boot_ns). Every lease time of
// this node is a reading of it.
func bootClock() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		// CLOCK_BOOTTIME exists since Linux 2.6.39; nothing we run on
		// lacks it.
		panic("clock_gettime(CLOCK_BOOTTIME): " + err.Error())
	}
	return time.Duration(ts.Nano())
}
