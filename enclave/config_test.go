package enclave

import (
	"embed"
	"errors"
	"github.com/enclave-storage/enclave-storage/pin"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/enclave-storage/enclave-storage/crypt"
)

// fixtures are embedded so the test binary also runs inside the
// integration VM, where there is no source tree.
//
//go:embed testdata
var fixtures embed.FS

// fixture writes testdata/name to a temporary file and returns its path.
func fixture(t testing.TB, name string) string {
	t.Helper()
	b, err := fixtures.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const pinnedRoot = "8ab0b0de4e1cb4b4b6a8d3d6d5a9f4a8e1b2c3d4e5f60718293a4b5c6d7e8f90"

func TestLoadConfig(t *testing.T) {
	c, err := LoadConfig(fixture(t, "config.json"))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	c = c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := Config{
		Parent: "vsock://3:10809", Heartbeat: DefaultHeartbeat, Control: DefaultControl, ImageExport: "image", RunExport: "run",
		Key:      "file:/etc/enclave-storage/run.key",
		LowerDir: DefaultLowerDir, UpperDir: DefaultUpperDir, RootDir: DefaultRootDir,
		Timeout: Duration(30 * time.Second), DeadConnTimeout: Duration(2 * time.Minute),
		StopGrace: Duration(DefaultStopGrace),
		App: App{
			Entrypoint: []string{"/usr/bin/server"}, Cmd: []string{"--listen", "vsock:5000"},
			Env: []string{"PATH=/usr/bin:/bin", "MODE=enclave"}, WorkingDir: "/srv", User: "app",
		},
		CmdlinePath: DefaultCmdlinePath, VerityJSONPath: DefaultVerityJSONPath,
	}
	if diff := cmp.Diff(want, c, cmp.AllowUnexported(Config{})); diff != "" {
		t.Fatalf("config (-want +got):\n%s", diff)
	}
	if got := c.App.Args(); strings.Join(got, " ") != "/usr/bin/server --listen vsock:5000" {
		t.Fatalf("Args = %q", got)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"typo.json":  `{"parnet": "vsock://3:1"}`,
		"bad.json":   `{"parent": 3}`,
		"trunc.json": `{"parent": "vsock:`,
		"dur.json":   `{"stop_grace": "soon"}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := LoadConfig(p); !errors.Is(err, ErrConfig) {
			t.Errorf("LoadConfig(%s) = %v, want ErrConfig", name, err)
		}
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadConfig(missing) = %v", err)
	}
	big := filepath.Join(dir, "big.json")
	os.WriteFile(big, make([]byte, maxConfigFileSize+1), 0o600)
	if _, err := LoadConfig(big); err == nil {
		t.Error("LoadConfig accepted a file over the size limit")
	}
}

func TestValidate(t *testing.T) {
	good := Config{Key: "file:/k", App: App{Cmd: []string{"/app"}}}
	tests := []struct {
		name string
		mut  func(*Config)
		ok   bool
	}{
		{"good", func(*Config) {}, true},
		{"ephemeral random", func(c *Config) { c.Key, c.Ephemeral = "random:", true }, true},
		{"random without ephemeral", func(c *Config) { c.Key = "random:" }, false},
		{"ephemeral with file key", func(c *Config) { c.Ephemeral = true }, false},
		{"bad key", func(c *Config) { c.Key = "kms:" }, false},
		{"no key", func(c *Config) { c.Key = "" }, false},
		{"same exports", func(c *Config) { c.RunExport = "image" }, false},
		{"relative dir", func(c *Config) { c.LowerDir = "mnt/lower" }, false},
		{"root dir /", func(c *Config) { c.RootDir = "/" }, false},
		{"same dirs", func(c *Config) { c.UpperDir, c.LowerDir = "/mnt/x", "/mnt/x" }, false},
		{"no app", func(c *Config) { c.App = App{} }, false},
		{"bad parent", func(c *Config) { c.Parent = "http://x" }, false},
		{"negative grace", func(c *Config) { c.StopGrace = -1 }, false},
		{"heartbeat loopback", func(c *Config) { c.Heartbeat = "vsock://1:9000" }, true},
		{"heartbeat off", func(c *Config) { c.Heartbeat = HeartbeatOff }, true},
		{"cheap kdf", func(c *Config) { c.LUKSKDF = &KDF{Type: "pbkdf2", Iterations: 1000} }, true},
		{"unknown kdf", func(c *Config) { c.LUKSKDF = &KDF{Type: "scrypt"} }, false},
		{"argon2i kdf, refused by the enclave policy", func(c *Config) { c.LUKSKDF = &KDF{Type: "argon2i"} }, false},
		{"argon2id above the memory bound", func(c *Config) { c.LUKSKDF = &KDF{Type: "argon2id", Memory: 2 << 20} }, false},
		{"argon2id within bounds", func(c *Config) { c.LUKSKDF = &KDF{Type: "argon2id", Memory: 64 << 10, Time: 4, Threads: 4} }, true},
		{"pbkdf2 sha1", func(c *Config) { c.LUKSKDF = &KDF{Type: "pbkdf2", Iterations: 1000, Hash: "sha1"} }, false},
		{"pbkdf2 above the iteration bound", func(c *Config) { c.LUKSKDF = &KDF{Type: "pbkdf2", Iterations: 1 << 24} }, false},
		{"bad heartbeat", func(c *Config) { c.Heartbeat = "vsock://3" }, false},
		{"negative heartbeat timeout", func(c *Config) { c.HeartbeatTimeout = -1 }, false},
		{"control off", func(c *Config) { c.Control = ControlOff }, true},
		{"control on a CID", func(c *Config) { c.Control = "vsock://16:9100" }, true},
		{"control on unix", func(c *Config) { c.Control = "unix:///run/control.sock" }, true},
		{"control without port", func(c *Config) { c.Control = "vsock://:" }, false},
		{"control bad scheme", func(c *Config) { c.Control = "http://x:1" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mut(&c)
			err := c.Defaults().Validate()
			if tt.ok != (err == nil) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, not ErrConfig", err)
			}
		})
	}
}

func TestParseParent(t *testing.T) {
	tests := []struct {
		in   string
		want Parent
		ok   bool
	}{
		{"vsock://3:10809", Parent{Network: "vsock", CID: 3, Port: 10809}, true},
		{"vsock://1:9000", Parent{Network: "vsock", CID: 1, Port: 9000}, true},
		{"tcp://127.0.0.1:10809", Parent{Network: "tcp", Address: "127.0.0.1:10809"}, true},
		{"tcp://[::1]:10809", Parent{Network: "tcp", Address: "[::1]:10809"}, true},
		{"unix:///run/nbd.sock", Parent{Network: "unix", Address: "/run/nbd.sock"}, true},
		{"vsock://3", Parent{}, false},
		{"vsock://parent:1", Parent{}, false},
		{"vsock://3:99999999999", Parent{}, false},
		{"tcp://host", Parent{}, false},
		{"unix://relative/path", Parent{}, false},
		{"3:10809", Parent{}, false},
		{"", Parent{}, false},
	}
	for _, tt := range tests {
		got, err := ParseParent(tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("ParseParent(%q) = %+v, %v; want %+v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestLoadPinned(t *testing.T) {
	dir := t.TempDir()
	cmdline := func(s string) string {
		p := filepath.Join(dir, "cmdline")
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	verityJSON := fixture(t, "verity.json")
	p, err := LoadPinned(cmdline("console=ttyS0 reboot=k "+CmdlineVerityRoot+"="+pinnedRoot+"\n"), verityJSON)
	if err != nil {
		t.Fatalf("LoadPinned: %v", err)
	}
	if p.RootHash.String() != pinnedRoot || p.DataBlocks != 256 || p.HashStartBlock() != 257 {
		t.Fatalf("params %+v (hash start %d)", p, p.HashStartBlock())
	}

	other := strings.Repeat("00", 32)
	tests := []struct {
		name    string
		cmdline string
		is      error
	}{
		{"mismatch", CmdlineVerityRoot + "=" + other, ErrPinMismatch},
		{"absent", "console=ttyS0", ErrNoVerityRoot},
		{"twice", CmdlineVerityRoot + "=" + pinnedRoot + " " + CmdlineVerityRoot + "=" + pinnedRoot, nil},
		{"not hex", CmdlineVerityRoot + "=zz", nil},
		{"empty", CmdlineVerityRoot + "=", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadPinned(cmdline(tt.cmdline), verityJSON)
			if err == nil || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("LoadPinned = %v, want %v", err, tt.is)
			}
		})
	}
}

func TestParsePinnedRejects(t *testing.T) {
	root := make([]byte, 32)
	base := `"hash_algorithm":"sha256","data_block_size":4096,"hash_block_size":4096,"data_blocks":1,"salt":"","hash_offset":4096,"superblock":false,"hash_blocks":0,"hash_device_size":4096,"root_hash":"` + strings.Repeat("00", 32) + `"`
	tests := map[string]string{
		"hash type 0":   `{"hash_type":0,` + base + `}`,
		"unknown field": `{"hash_type":1,"extra":1,` + base + `}`,
		"bad block":     strings.Replace(`{"hash_type":1,`+base+`}`, `"data_block_size":4096`, `"data_block_size":1000`, 1),
		"no blocks":     strings.Replace(`{"hash_type":1,`+base+`}`, `"data_blocks":1`, `"data_blocks":0`, 1),
		"bad algorithm": strings.Replace(`{"hash_type":1,`+base+`}`, `"sha256"`, `"sha 256"`, 1),
	}
	if _, err := parsePinned(root, []byte(`{"hash_type":1,`+base+`}`), "ok"); err != nil {
		t.Fatalf("parsePinned(valid) = %v", err)
	}
	for name, js := range tests {
		if _, err := parsePinned(root, []byte(js), name); err == nil {
			t.Errorf("parsePinned(%s) accepted %s", name, js)
		}
	}
}

// FuzzPinned feeds arbitrary command lines and verity JSON to the pinning
// parsers: they come from the EIF, which an attacker may have built.
func FuzzPinned(f *testing.F) {
	js, _ := fixtures.ReadFile("testdata/verity.json")
	f.Add(CmdlineVerityRoot+"="+pinnedRoot, js)
	f.Add("", []byte("{}"))
	f.Fuzz(func(t *testing.T, cmdline string, js []byte) {
		root, err := pin.VerityRoot(cmdline)
		if err != nil {
			return
		}
		p, err := parsePinned(root, js, "fuzz")
		if err == nil && (p.DataBlocks == 0 || p.HashType != 1) {
			t.Fatalf("accepted %+v", p)
		}
	})
}

func TestConfigLUKSKDF(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(p, []byte(`{"key": "file:/k", "luks_kdf": {"type": "pbkdf2", "iterations": 1000}, "app": {"cmd": ["/app"]}}`), 0o600)
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Defaults().Validate(); err != nil {
		t.Fatal(err)
	}
	got := c.formatOptions()
	if got == nil || got.KDF != (crypt.KDF{Type: crypt.PBKDF2, Iterations: 1000, Hash: "sha256"}) {
		t.Fatalf("formatOptions() = %+v, want pbkdf2-sha256 with 1000 iterations", got)
	}
	if (Config{}).formatOptions() != nil {
		t.Fatal("without luks_kdf, formatOptions() must leave crypt's defaults")
	}
}
