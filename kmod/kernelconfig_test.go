package kmod

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// readConfig returns the CONFIG_X=value lines of a kernel config file.
func readConfig(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opts := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && strings.HasPrefix(k, "CONFIG_") {
			if _, dup := opts[k]; dup {
				t.Errorf("%s: %s set twice", file, k)
			}
			opts[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return opts
}

// TestEnclaveConfigFragmentInDebian checks every option of
// kernel/enclave.config is enabled (=y or =m) in Debian's kernel, the one
// the integration VM boots with imgbuild --kernel-modules: what passes
// there is what the fragment asks of an enclave kernel.
func TestEnclaveConfigFragmentInDebian(t *testing.T) {
	const fragment = "../kernel/enclave.config"
	if _, err := os.Stat(fragment); err != nil && os.Getenv("INTEGRATION_OUT") != "" {
		t.Skip("the integration VM has no source tree; this test runs on the host")
	}
	frag := readConfig(t, fragment)
	if len(frag) == 0 {
		t.Fatal("kernel/enclave.config sets no options")
	}
	for k, v := range frag {
		if v != "y" {
			t.Errorf("fragment: %s=%s, want =y (built in)", k, v)
		}
	}
	found, _ := filepath.Glob("../integration/.cache/linux-image-*/boot/config-*")
	if len(found) == 0 {
		t.Skip("no Debian kernel in integration/.cache (scripts/integration.sh fetches it)")
	}
	deb := readConfig(t, found[0])
	for k := range frag {
		if v := deb[k]; v != "y" && v != "m" {
			t.Errorf("%s is %q in %s, want y or m", k, v, filepath.Base(found[0]))
		}
	}
	t.Logf("%d fragment options all enabled in %s", len(frag), filepath.Base(found[0]))
}
