//go:build linux

package enclave

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReapOrphans makes this test process a child subreaper (standing in
// for PID 1), lets a shell orphan a short-lived grandchild, and checks the
// grandchild is collected while the kept child is left for exec.Cmd.Wait.
func TestReapOrphans(t *testing.T) {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		t.Skipf("PR_SET_CHILD_SUBREAPER: %v", err)
	}
	defer unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	// The shell starts a background child, prints its pid and exits at
	// once: the child is orphaned to us and exits shortly after.
	orphaner := exec.Command(sh, "-c", "sleep 0.2 & echo $!")
	out, err := orphaner.Output()
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	keep := exec.Command(sh, "-c", "sleep 0.3; exit 3")
	if err := keep.Start(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ReapOrphans(ctx, keep.Process.Pid)
	}()
	err = keep.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("kept child's status: %v, want exit 3 (the reaper must not take it)", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat("/proc/" + strconv.Itoa(orphan)); err != nil {
			break // reaped: no zombie left
		}
		if time.Now().After(deadline) {
			t.Fatalf("orphan %d never reaped", orphan)
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
}

// TestStopStragglers: a process the application left running in its
// process group is stopped, so it cannot keep the overlay busy.
func TestStopStragglers(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	cmd := exec.Command(sh, "-c", "sleep 600 >/dev/null 2>&1 & echo $!")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	straggler, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	if !alive(straggler) {
		t.Fatalf("straggler %d not running before the test", straggler)
	}
	stopStragglers(cmd.Process.Pid, "/nonexistent-root", 5*time.Second, slog.New(slog.DiscardHandler))
	deadline := time.Now().Add(10 * time.Second)
	for alive(straggler) {
		if time.Now().After(deadline) {
			unix.Kill(straggler, unix.SIGKILL)
			t.Fatalf("straggler %d still running", straggler)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Nothing left: a second call returns at once.
	stopStragglers(cmd.Process.Pid, "/nonexistent-root", time.Hour, slog.New(slog.DiscardHandler))
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}
