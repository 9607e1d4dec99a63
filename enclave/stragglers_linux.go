//go:build linux

package enclave

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// stopStragglers ends what the application left running, which would
// otherwise keep the overlay busy and the run volume mounted: the
// application's process group (it was started in a session of its own)
// and, as PID 1, every process whose root directory is the application's
// root or below it (a daemon that left the session is still chrooted
// there). SIGTERM first, SIGKILL after grace.
//
// Processes outside the root are left alone: in an enclave there are none
// but the agent's own, and a test that runs the parent side (nbd-parent)
// in the same machine must keep it serving until the run volume is
// unmounted. kill(-1), which inits use at shutdown, would take it down
// with the application.
func stopStragglers(appPid int, rootDir string, grace time.Duration, log *slog.Logger) {
	targets := func() []int {
		t := []int{-appPid}
		if os.Getpid() == 1 {
			t = append(t, chrootedIn(rootDir)...)
		}
		return t
	}
	signal := func(sig unix.Signal) bool {
		any := false
		for _, p := range targets() {
			if unix.Kill(p, sig) == nil {
				any = true
			}
		}
		return any
	}
	if !signal(unix.SIGTERM) {
		return // ESRCH everywhere: nothing left
	}
	log.Info("stopping processes the application left behind")
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !signal(0) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	signal(unix.SIGKILL)
}

// chrootedIn lists the processes whose root directory (/proc/PID/root) is
// dir or below it. Zombies have no root and are not listed.
func chrootedIn(dir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		root, err := os.Readlink("/proc/" + e.Name() + "/root")
		if err == nil && (root == dir || strings.HasPrefix(root, dir+"/")) {
			pids = append(pids, pid)
		}
	}
	return pids
}
