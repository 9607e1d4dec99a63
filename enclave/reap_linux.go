//go:build linux

package enclave

import (
	"context"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// ReapOrphans reaps exited children other than keep until ctx is done. As
// PID 1 the agent inherits every process the application orphans, and
// nothing else would collect their exit status; keep (the application,
// waited for by exec.Cmd.Wait) is left alone: the child is inspected with
// WNOWAIT first and only collected when it is not keep.
func ReapOrphans(ctx context.Context, keep int) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, unix.SIGCHLD)
	defer signal.Stop(sig)
	for {
		for reapOne(keep) {
		}
		select {
		case <-ctx.Done():
			return
		case <-sig:
		}
	}
}

// reapOne collects one exited child other than keep and reports whether it
// did.
func reapOne(keep int) bool {
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		return false
	}
	pid := siginfoPid(&info)
	if pid == 0 || pid == keep {
		return false
	}
	var ws unix.WaitStatus
	n, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
	return err == nil && n == pid
}
