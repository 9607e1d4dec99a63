package enclave

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/enclave-storage/enclave-storage/pin"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/keys"
	"github.com/enclave-storage/enclave-storage/nbd/nbdconfig"
	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/enclave-storage/enclave-storage/verity"
)

// ErrConfig reports an invalid configuration.
var ErrConfig = errors.New("enclave: invalid configuration")

// ErrPinMismatch reports that the verity parameters in the ramdisk do not
// carry the root hash pinned on the kernel command line.
var ErrPinMismatch = errors.New("enclave: verity.json root hash differs from the one pinned on the kernel command line")

// Defaults for Config's zero fields.
const (
	DefaultParent         = "vsock://3:10809" // CID 3 is the parent instance in Nitro
	DefaultImageExport    = "image"
	DefaultRunExport      = "run"
	DefaultLowerDir       = "/mnt/lower"
	DefaultUpperDir       = "/mnt/upper"
	DefaultRootDir        = "/mnt/root"
	DefaultStopGrace      = 10 * time.Second
	DefaultCmdlinePath    = "/proc/cmdline"
	DefaultVerityJSONPath = "/" + pin.VerityPath
	DefaultConfigJSONPath = "/" + pin.ConfigPath
	// CmdlineVerityRoot is the kernel parameter pinning the root hash, as
	// eif.PinCmdline writes it.
	CmdlineVerityRoot      = pin.CmdlineVerityRoot
	imageVolumeName        = "image" // dm name of the verity device
	runVolumeName          = "run"   // dm name of the crypt device, and the key's volume name
	maxConfigFileSize      = 1 << 20
	defaultConnectDeadline = 60 * time.Second
)

// DefaultHeartbeat is where nitro-cli waits for the enclave's boot
// heartbeat (package heartbeat: CID 3, port 9000); HeartbeatOff in
// Config.Heartbeat disables it.
const (
	DefaultHeartbeat = "vsock://3:9000"
	HeartbeatOff     = "off"
)

// DefaultControl is where the agent listens for the parent's stop
// requests (package control: any local CID, port 9100); ControlOff in
// Config.Control disables the listener.
const (
	DefaultControl = "vsock://:9100"
	ControlOff     = "off"
)

// Duration is a time.Duration that reads and writes JSON as "30s".
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// App is how to run the application, as the image config says; the JSON
// names are those of the OCI image config (and of imgsrc.Config), so
// imgbuild can copy the image's config into Config.App as it is.
type App struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	Env        []string `json:"env,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Args is Entrypoint followed by Cmd, as container runtimes run them.
func (a App) Args() []string { return append(append([]string{}, a.Entrypoint...), a.Cmd...) }

// Config is the mount agent's configuration. It is read from
// /etc/enclave-storage/config.json in the measured ramdisk (LoadConfig);
// command-line flags may override fields for tests. Zero fields take the
// Default* values (see Defaults).
type Config struct {
	// Parent is where nbd-parent listens: "vsock://CID:PORT" (CID 3 is the
	// parent in Nitro, 1 is loopback), "tcp://HOST:PORT" or "unix:///path".
	Parent string `json:"parent,omitempty"`
	// Heartbeat is where the boot heartbeat goes when the agent runs as
	// PID 1 (DefaultHeartbeat, nitro-cli's listener; tests use
	// "vsock://1:9000", the loopback); HeartbeatOff skips it. Same syntax as
	// Parent. HeartbeatTimeout bounds the exchange (default 20s).
	Heartbeat        string   `json:"heartbeat,omitempty"`
	HeartbeatTimeout Duration `json:"heartbeat_timeout,omitempty"`
	// Control is where the agent listens for the parent's stop requests
	// (package control): "vsock://:PORT" (DefaultControl), "vsock://CID:PORT",
	// "tcp://HOST:PORT" or "unix:///path"; ControlOff disables it. When
	// Parent is vsock, only its CID may connect.
	Control string `json:"control,omitempty"`
	// ImageExport and RunExport are the NBD export names of the verity
	// image and of the encrypted run volume.
	ImageExport string `json:"image_export,omitempty"`
	RunExport   string `json:"run_export,omitempty"`
	// Key is the run volume's key provider spec (keys.Parse): "file:PATH",
	// "random:", "env:NAME", "kms:ARN" (sealed in the header, released by
	// KMS to this attested enclave).
	Key string `json:"key,omitempty"`
	// Ephemeral makes the run volume scratch space, formatted afresh on
	// every launch. It is required with a "random:" key (which cannot
	// unlock the volume again) and refused with any other.
	Ephemeral bool `json:"ephemeral,omitempty"`
	// LowerDir, UpperDir and RootDir are where the image, the run volume
	// and the application's overlay root are mounted.
	LowerDir string `json:"lower_dir,omitempty"`
	UpperDir string `json:"upper_dir,omitempty"`
	RootDir  string `json:"root_dir,omitempty"`
	// Timeout and DeadConnTimeout are the kernel NBD client's request and
	// dead-connection timeouts (see package nbdkernel).
	Timeout         Duration `json:"nbd_timeout,omitempty"`
	DeadConnTimeout Duration `json:"nbd_dead_conn_timeout,omitempty"`
	// StopGrace is how long the application has between SIGTERM and
	// SIGKILL.
	StopGrace Duration `json:"stop_grace,omitempty"`
	// LUKSKDF, when set, is the KDF of the keyslot a first launch
	// formats, instead of crypt.DefaultKDF (argon2id, 64 MiB, 4 passes).
	// The run volume's keys come from a key provider with full entropy,
	// so the KDF is not what protects them; a cheap one (pbkdf2, 1000
	// iterations) saves minutes per launch on slow or emulated CPUs. It is
	// in the measured configuration like every other field.
	LUKSKDF *KDF `json:"luks_kdf,omitempty"`
	// App is the application to run in the overlay root.
	App App `json:"app"`

	// CmdlinePath and VerityJSONPath locate the pinned root hash and the
	// verity parameters; tests point them elsewhere.
	CmdlinePath    string `json:"-"`
	VerityJSONPath string `json:"-"`

	// AppExited, when set, is told the application's exit status
	// (ExitError's rule: 128+signal when killed) as soon as it ends.
	AppExited func(status int) `json:"-"`

	// Attester, when set, replaces /dev/nsm for kms: keys. Only
	// nbd-enclave built with the fakensm tag (tests) sets it; no
	// configuration file or flag can.
	Attester nsm.Attester `json:"-"`
}

// KDF is Config.LUKSKDF, crypt.KDF with JSON names.
type KDF struct {
	Type       string `json:"type"`                 // "argon2id", "argon2i" or "pbkdf2"
	Time       uint32 `json:"time,omitempty"`       // argon2 passes
	Memory     uint32 `json:"memory_kib,omitempty"` // argon2 memory
	Threads    uint8  `json:"threads,omitempty"`    // argon2 lanes
	Iterations uint32 `json:"iterations,omitempty"` // pbkdf2
	Hash       string `json:"hash,omitempty"`       // pbkdf2, default sha256
}

// formatOptions is how a first launch formats LUKS2: with LUKSKDF, else
// crypt's defaults (nil).
func (c Config) formatOptions() *crypt.FormatOptions {
	if c.LUKSKDF != nil {
		return &crypt.FormatOptions{KDF: c.LUKSKDF.crypt()}
	}
	return nil
}

// crypt is k as package crypt spells it, with its default PBKDF2 hash.
func (k KDF) crypt() crypt.KDF {
	ck := crypt.KDF{Type: crypt.KDFType(k.Type), Time: k.Time, Memory: k.Memory,
		Threads: k.Threads, Iterations: k.Iterations, Hash: k.Hash}
	if ck.Type == crypt.PBKDF2 && ck.Hash == "" {
		ck.Hash = "sha256"
	}
	return ck
}

// Defaults returns c with every zero field set to its default.
func (c Config) Defaults() Config {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Parent, DefaultParent)
	def(&c.Heartbeat, DefaultHeartbeat)
	def(&c.Control, DefaultControl)
	def(&c.ImageExport, DefaultImageExport)
	def(&c.RunExport, DefaultRunExport)
	def(&c.LowerDir, DefaultLowerDir)
	def(&c.UpperDir, DefaultUpperDir)
	def(&c.RootDir, DefaultRootDir)
	def(&c.CmdlinePath, DefaultCmdlinePath)
	def(&c.VerityJSONPath, DefaultVerityJSONPath)
	if c.StopGrace == 0 {
		c.StopGrace = Duration(DefaultStopGrace)
	}
	return c
}

// Validate checks a configuration after Defaults.
func (c Config) Validate() error {
	if _, err := ParseParent(c.Parent); err != nil {
		return err
	}
	if c.ImageExport == "" || c.RunExport == "" || c.ImageExport == c.RunExport {
		return fmt.Errorf("%w: image and run exports must be two different names (%q, %q)", ErrConfig, c.ImageExport, c.RunExport)
	}
	kp, err := keys.Parse(c.Key)
	if err != nil {
		return fmt.Errorf("%w: key: %w", ErrConfig, err)
	}
	if _, random := kp.(keys.Random); random != c.Ephemeral {
		if random {
			return fmt.Errorf("%w: a random: key cannot unlock the run volume again; set ephemeral to format it on every launch", ErrConfig)
		}
		return fmt.Errorf("%w: ephemeral run volumes need a random: key, not %q", ErrConfig, c.Key)
	}
	dirs := map[string]string{"lower_dir": c.LowerDir, "upper_dir": c.UpperDir, "root_dir": c.RootDir}
	seen := map[string]string{}
	for name, d := range dirs {
		if !path.IsAbs(d) || path.Clean(d) != d || d == "/" {
			return fmt.Errorf("%w: %s %q must be a clean absolute path other than /", ErrConfig, name, d)
		}
		if other, dup := seen[d]; dup {
			return fmt.Errorf("%w: %s and %s are both %q", ErrConfig, name, other, d)
		}
		seen[d] = name
	}
	if len(c.App.Args()) == 0 {
		return fmt.Errorf("%w: app has neither entrypoint nor cmd", ErrConfig)
	}
	if k := c.LUKSKDF; k != nil {
		// A volume formatted with a KDF the enclave's own header policy
		// refuses would never open again.
		if err := crypt.EnclavePolicy().CheckKDF(k.crypt()); err != nil {
			return fmt.Errorf("%w: luks_kdf: %w", ErrConfig, err)
		}
	}
	if c.Heartbeat != HeartbeatOff {
		if _, err := ParseParent(c.Heartbeat); err != nil {
			return fmt.Errorf("%w (heartbeat)", err)
		}
	}
	if c.Control != ControlOff {
		if _, err := nbdconfig.ParseListen(c.Control); err != nil {
			return fmt.Errorf("%w: control: %w", ErrConfig, err)
		}
	}
	if c.Timeout < 0 || c.DeadConnTimeout < 0 || c.StopGrace < 0 || c.HeartbeatTimeout < 0 {
		return fmt.Errorf("%w: negative timeout", ErrConfig)
	}
	return nil
}

// LoadConfig reads a JSON configuration file. Unknown fields are an error,
// so a typo in a measured file cannot silently fall back to a default.
func LoadConfig(file string) (Config, error) {
	var c Config
	b, err := readSmall(file)
	if err != nil {
		return c, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("%w: %s: %w", ErrConfig, file, err)
	}
	return c, nil
}

// readSmall reads a configuration-sized file.
func readSmall(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("enclave: %w", err)
	}
	defer f.Close()
	b := make([]byte, maxConfigFileSize+1)
	n, err := f.Read(b)
	for err == nil && n <= maxConfigFileSize {
		var m int
		m, err = f.Read(b[n:])
		n += m
	}
	if n > maxConfigFileSize {
		return nil, fmt.Errorf("enclave: %s is larger than %d bytes", file, maxConfigFileSize)
	}
	return b[:n], nil
}

// Parent is a parsed Config.Parent.
type Parent struct {
	Network string // "vsock", "tcp" or "unix"
	CID     uint32 // vsock only
	Port    uint32 // vsock only
	Address string // tcp "host:port" or unix path
}

// ParseParent parses "vsock://CID:PORT", "tcp://HOST:PORT" or
// "unix:///path".
func ParseParent(s string) (Parent, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Parent{}, fmt.Errorf("%w: parent %q: %w", ErrConfig, s, err)
	}
	switch u.Scheme {
	case "vsock":
		cid, err1 := strconv.ParseUint(u.Hostname(), 10, 32)
		port, err2 := strconv.ParseUint(u.Port(), 10, 32)
		if err1 != nil || err2 != nil || u.Path != "" {
			return Parent{}, fmt.Errorf("%w: parent %q: want vsock://CID:PORT", ErrConfig, s)
		}
		return Parent{Network: "vsock", CID: uint32(cid), Port: uint32(port)}, nil
	case "tcp":
		if u.Host == "" || u.Port() == "" || u.Path != "" {
			return Parent{}, fmt.Errorf("%w: parent %q: want tcp://HOST:PORT", ErrConfig, s)
		}
		return Parent{Network: "tcp", Address: u.Host}, nil
	case "unix":
		if u.Host != "" || !path.IsAbs(u.Path) {
			return Parent{}, fmt.Errorf("%w: parent %q: want unix:///absolute/path", ErrConfig, s)
		}
		return Parent{Network: "unix", Address: u.Path}, nil
	}
	return Parent{}, fmt.Errorf("%w: parent %q: scheme must be vsock, tcp or unix", ErrConfig, s)
}

// LoadPinned reads the verity parameters from verityJSON and the pinned
// root hash from the kernel command line in cmdlineFile, and returns the
// parameters only if both name the same root hash.
func LoadPinned(cmdlineFile, verityJSON string) (*verity.Params, error) {
	cmdline, err := readSmall(cmdlineFile)
	if err != nil {
		return nil, err
	}
	root, err := pin.VerityRoot(string(cmdline))
	if err != nil {
		return nil, fmt.Errorf("enclave: %s: %w", cmdlineFile, err)
	}
	b, err := readSmall(verityJSON)
	if err != nil {
		return nil, err
	}
	return parsePinned(root, b, verityJSON)
}

func parsePinned(root, verityJSON []byte, name string) (*verity.Params, error) {
	var p verity.Params
	dec := json.NewDecoder(bytes.NewReader(verityJSON))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("enclave: verity parameters %s: %w", name, err)
	}
	if !bytes.Equal(p.RootHash, root) {
		return nil, fmt.Errorf("%w: %s has %x, the command line %x", ErrPinMismatch, name, []byte(p.RootHash), root)
	}
	switch {
	case p.HashType != 1:
		return nil, fmt.Errorf("enclave: verity parameters %s: hash type %d, only 1 is supported", name, p.HashType)
	case p.DataBlocks == 0 || p.DataBlockSize < 512 || p.HashBlockSize < 512 ||
		p.DataBlockSize&(p.DataBlockSize-1) != 0 || p.HashBlockSize&(p.HashBlockSize-1) != 0:
		return nil, fmt.Errorf("enclave: verity parameters %s: bad geometry (%d blocks of %d bytes, hash blocks of %d)",
			name, p.DataBlocks, p.DataBlockSize, p.HashBlockSize)
	case strings.ContainsAny(p.Algorithm, " \t\n") || p.Algorithm == "":
		return nil, fmt.Errorf("enclave: verity parameters %s: bad algorithm %q", name, p.Algorithm)
	}
	return &p, nil
}

// ErrNoVerityRoot means the kernel command line pins no root hash.
var ErrNoVerityRoot = pin.ErrNoVerityRoot
