package imgbuild

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/enclave-storage/enclave-storage/enclave"
)

// TestEnclaveConfigCarriesImageProcess checks that the image config's
// Entrypoint, Cmd, Env, WorkingDir and User reach nbd-enclave as its
// LoadConfig reads them, with and without an operator config file.
func TestEnclaveConfigCarriesImageProcess(t *testing.T) {
	app := App{
		Entrypoint: []string{"/usr/bin/server"}, Cmd: []string{"--port", "80"},
		Env: []string{"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8"}, WorkingDir: "/srv", User: "app:app",
	}
	want := enclave.App{Entrypoint: app.Entrypoint, Cmd: app.Cmd, Env: app.Env, WorkingDir: app.WorkingDir, User: app.User}
	dir := t.TempDir()
	operator := filepath.Join(dir, "operator.json")
	if err := os.WriteFile(operator, []byte(`{"key": "random:", "ephemeral": true, "heartbeat": "vsock://1:9000"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{"", operator} {
		b, err := enclaveConfig(file, app)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "config.json")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := enclave.LoadConfig(p)
		if err != nil {
			t.Fatalf("nbd-enclave cannot load what imgbuild wrote (%s): %v", b, err)
		}
		if diff := cmp.Diff(want, cfg.App); diff != "" {
			t.Errorf("operator file %q: app (-want +got):\n%s", file, diff)
		}
	}
}
