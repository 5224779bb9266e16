//go:build failpoints

package failpoint

import (
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
)

var hits atomic.Int64

// Hit kills the process with SIGKILL when MAILHOOK_FAILPOINT equals name. MAILHOOK_FAILPOINT_SKIP=N
// lets the first N hits of that point pass, so a test can crash in the middle of a stream.
func Hit(name string) {
	if os.Getenv("MAILHOOK_FAILPOINT") != name {
		return
	}
	skip, _ := strconv.Atoi(os.Getenv("MAILHOOK_FAILPOINT_SKIP"))
	if hits.Add(1) <= int64(skip) {
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not delivered synchronously; never return
}
