//go:build linux

package enclave

import (
	"errors"
	"path"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestInitMounts checks the mount table as data: absolute clean targets,
// each once, every parent mounted before what is mounted inside it, and
// none of them allowing setuid or (except /dev's devices) device nodes.
func TestInitMounts(t *testing.T) {
	ms := InitMounts()
	seen := map[string]int{}
	for i, m := range ms {
		if !path.IsAbs(m.Target) || path.Clean(m.Target) != m.Target {
			t.Errorf("%s: not a clean absolute path", m.Target)
		}
		if _, dup := seen[m.Target]; dup {
			t.Errorf("%s mounted twice", m.Target)
		}
		seen[m.Target] = i
		if m.Flags&unix.MS_NOSUID == 0 || m.Flags&unix.MS_NOEXEC == 0 {
			t.Errorf("%s: flags %#x lack nosuid or noexec", m.Target, m.Flags)
		}
		if m.Flags&unix.MS_NODEV == 0 && m.FSType != "devtmpfs" && m.FSType != "devpts" {
			t.Errorf("%s (%s): device nodes allowed", m.Target, m.FSType)
		}
	}
	for _, m := range ms {
		for p := path.Dir(m.Target); p != "/"; p = path.Dir(p) {
			if j, ok := seen[p]; ok && j > seen[m.Target] {
				t.Errorf("%s is mounted after %s, which is inside it", p, m.Target)
			}
		}
	}
	// What the reference init mounts (init.c), by target.
	for _, want := range []string{"/dev", "/proc", "/sys", "/dev/pts", "/dev/shm", "/run", "/tmp", "/sys/fs/cgroup"} {
		if _, ok := seen[want]; !ok {
			t.Errorf("no mount at %s", want)
		}
	}
	for _, l := range InitLinks() {
		if !strings.HasPrefix(l[0], "/dev/") || !strings.HasPrefix(l[1], "/proc/self/fd") {
			t.Errorf("link %s -> %s", l[0], l[1])
		}
	}
}

func TestParseCgroups(t *testing.T) {
	b, err := fixtures.ReadFile("testdata/cgroups")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
		want []string
		err  error
	}{
		{"debian kernel", string(b), []string{"cpuset", "cpu", "cpuacct", "blkio", "devices", "freezer", "net_cls",
			"perf_event", "net_prio", "hugetlb", "pids", "rdma", "misc"}, nil},
		{"empty", "", nil, nil},
		{"header only", "#subsys_name\thierarchy\tnum_cgroups\tenabled\n", nil, nil},
		{"no header", "pids 0 1 1\n", []string{"pids"}, nil},
		{"short line", "#h\npids 0 1\n", nil, ErrCgroups},
		{"not a number", "#h\npids 0 1 yes\n", nil, ErrCgroups},
		{"path in name", "#h\n../x 0 1 1\n", nil, ErrCgroups},
		{"too large", strings.Repeat("x", maxCgroupsFile+1), nil, ErrCgroups},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCgroups([]byte(tt.in))
			if !errors.Is(err, tt.err) || tt.err == nil && err != nil {
				t.Fatalf("ParseCgroups = %v, want %v", err, tt.err)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ParseCgroups = %q, want %q", got, tt.want)
			}
		})
	}
}

func FuzzParseCgroups(f *testing.F) {
	b, _ := fixtures.ReadFile("testdata/cgroups")
	f.Add(b)
	f.Add([]byte("#h\npids 0 1 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ctrls, err := ParseCgroups(b)
		if err != nil {
			return
		}
		for _, c := range ctrls {
			if c == "" || strings.ContainsAny(c, "/ \t\n") || len(c) > 64 {
				t.Fatalf("controller name %q", c)
			}
		}
	})
}
