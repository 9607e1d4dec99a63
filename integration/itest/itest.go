package itest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Environment variables the harness sets for test binaries.
const (
	// EnvRequire, when non-empty, makes Need fail instead of skip: the
	// harness promises the capabilities are there.
	EnvRequire = "INTEGRATION_REQUIRE"
	// EnvOut names the artifact directory (a 9p share in the VM).
	EnvOut = "INTEGRATION_OUT"
	// EnvScratch names a scratch block device whose content the host
	// reads after the run (a virtio-blk drive in the VM).
	EnvScratch = "INTEGRATION_SCRATCH"
	// EnvHostTools is a PATH-like list of directories holding the host's
	// own (dynamically linked) programs, runnable in the VM: the harness
	// shares the host's root read-only and binds its /usr.
	EnvHostTools = "INTEGRATION_HOST_TOOLS"
)

// What the rig test leaves for the harness to check on the host after the
// run, proving artifacts get out of the VM.
const (
	// ArtifactName is a path below OutDir, holding ArtifactData.
	ArtifactName = "itest/rig-artifact"
	ArtifactData = "written inside the integration VM\n"
	// ScratchMessage is written at offset 0 of the scratch device.
	ScratchMessage = "integration scratch drive ok\n"
)

// Required reports whether the test runs under the harness, where every
// capability must be present.
func Required() bool { return os.Getenv(EnvRequire) != "" }

// Need checks a capability: err nil means present. Under the harness a
// missing capability fails the test; elsewhere (a plain go test -tags
// integration on a developer machine) it skips it.
func Need(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if Required() {
		t.Fatalf("%s: %v", what, err)
	}
	t.Skipf("%s unavailable (%v); this test runs in the integration VM: make integration", what, err)
}

// NeedRoot is Need for running as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Need(t, "root", os.ErrPermission)
	}
}

// NeedPath is Need for a path that must exist, e.g. /dev/mapper/control.
func NeedPath(t testing.TB, path string) {
	t.Helper()
	_, err := os.Stat(path)
	Need(t, path, err)
}

// OutDir returns the artifact directory the host reads after the run, or
// "" when the harness gave none.
func OutDir() string { return os.Getenv(EnvOut) }

// ScratchDevice returns the scratch block device the host reads after the
// run, or "" when there is none (host mode).
func ScratchDevice() string { return os.Getenv(EnvScratch) }

// HostTool returns the path of the host's program name: in the VM, from
// the directories in $INTEGRATION_HOST_TOOLS; elsewhere (host mode, a
// developer's go test), from PATH. The error says where it looked.
func HostTool(name string) (string, error) {
	dirs := os.Getenv(EnvHostTools)
	if dirs == "" {
		return exec.LookPath(name)
	}
	for _, d := range filepath.SplitList(dirs) {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not in %s=%s: %w", name, EnvHostTools, dirs, errors.ErrUnsupported)
}

// NeedHostTool is Need for a host program (HostTool): it returns its path.
func NeedHostTool(t testing.TB, name string) string {
	t.Helper()
	p, err := HostTool(name)
	Need(t, name, err)
	return p
}
