package crypt

import (
	"bytes"
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// kdfCounter counts keyslot KDF runs and then runs the real KDF.
type kdfCounter struct{ n int }

func (c *kdfCounter) derive(ctx context.Context, k *kdfJSON, password []byte, keyLen int) ([]byte, error) {
	c.n++
	return k.derive(ctx, password, keyLen)
}

// openCounting is OpenWithPolicy (p non-nil) or Open, counting KDF runs
// and the bytes allocated meanwhile.
func openCounting(t *testing.T, f *os.File, key []byte, p *Policy) (v *Volume, kdfRuns int, allocated uint64, err error) {
	t.Helper()
	size, known := deviceSize(f)
	var c kdfCounter
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	v, err = open(bg, f, key, sizeOrUnknown(size, known), false, openConfig{policy: p, kdf: c.derive})
	runtime.ReadMemStats(&after)
	return v, c.n, after.TotalAlloc - before.TotalAlloc, err
}

// headerBudget is far above what reading and checking a header allocates
// (a 16 KiB area per copy, its JSON) and far below any KDF the policy
// refuses (the smallest is 1 GiB + 1 KiB of argon2).
const headerBudget = 16 << 20

// enclaveFormatted formats a 20 MiB image as the enclave does.
func enclaveFormatted(t *testing.T, key []byte, opts FormatOptions) (*os.File, string) {
	t.Helper()
	f, p := sparseFile(t, t.TempDir(), "img", 20<<20)
	if opts.KDF == (KDF{}) {
		opts.KDF = MachineKeyKDF()
	}
	if _, err := Format(bg, f, key, &opts); err != nil {
		t.Fatal(err)
	}
	return f, p
}

// TestEnclavePolicyAccepts: what the enclave writes (both KDFs) and the
// same layout made by cryptsetup open under the policy.
func TestEnclavePolicyAccepts(t *testing.T) {
	key := make([]byte, 32)
	p := EnclavePolicy()
	for _, kdf := range []KDF{MachineKeyKDF(), DefaultKDF()} {
		f, _ := enclaveFormatted(t, key, FormatOptions{KDF: kdf, Tokens: []Token{kmsToken(0)}})
		v, runs, _, err := openCounting(t, f, key, &p)
		if err != nil || v.Keyslot != 0 || runs != 1 {
			t.Fatalf("%s: OpenWithPolicy = %+v, %v after %d KDF runs", kdf.Type, v, err, runs)
		}
	}
	if !cryptsetupInstalled() {
		t.Log("cryptsetup not installed; cryptsetup-made header not checked")
		return
	}
	dir := t.TempDir()
	f, img := sparseFile(t, dir, "img", 20<<20)
	mustCryptsetup(t, "luksFormat", "--batch-mode", "--type", "luks2", "--key-size", "512", "--sector-size", "4096",
		"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file", writeKeyFile(t, dir, "k", key), img)
	if _, err := OpenWithPolicy(bg, f, key, p); err != nil {
		t.Fatalf("cryptsetup's header of the enclave's layout: %v", err)
	}
}

// TestEnclavePolicyRefuses: each hostile header found against main
// (checksums recomputed) is refused with a PolicyError naming the field,
// without running a KDF or allocating beyond the header. Those marked
// opens are headers Open alone accepts with the right key.
func TestEnclavePolicyRefuses(t *testing.T) {
	key := make([]byte, 32)
	set := func(val any, path ...string) func(map[string]any) []byte {
		return func(m map[string]any) []byte {
			obj(m, path[:len(path)-1]...)[path[len(path)-1]] = val
			return nil
		}
	}
	argon2 := func(time, memory, cpus int64) func(map[string]any) []byte {
		return func(m map[string]any) []byte {
			k := obj(m, "keyslots", "0", "kdf")
			delete(k, "hash")
			delete(k, "iterations")
			k["type"], k["time"], k["memory"], k["cpus"] = "argon2id", time, memory, cpus
			return nil
		}
	}
	digest := func(hash string, n int) func(map[string]any) []byte {
		return func(m map[string]any) []byte {
			d := obj(m, "digests", "0")
			d["hash"], d["digest"] = hash, make([]byte, n)
			return nil
		}
	}
	tests := []struct {
		name   string
		opts   FormatOptions
		mutate func(map[string]any) []byte
		adds   int // keyslots added with AddKey
		field  string
		opens  bool // Open without a policy accepts it
	}{
		{"argon2 4 GiB 255 threads", FormatOptions{}, argon2(4, 4<<20, 255), 0, "keyslot 0 argon2 memory (KiB)", false},
		{"argon2 1 GiB + 1 KiB", FormatOptions{}, argon2(4, 1<<20+1, 4), 0, "keyslot 0 argon2 memory (KiB)", false},
		{"argon2 8 threads", FormatOptions{}, argon2(4, 1024, 8), 0, "keyslot 0 argon2 threads", false},
		{"argon2 time 2^32-1", FormatOptions{}, argon2(maxIterations, 1024, 4), 0, "keyslot 0 argon2 time", false},
		{"argon2i", FormatOptions{KDF: fastArgon2}, set("argon2i", "keyslots", "0", "kdf", "type"), 0, "keyslot 0 KDF", false},
		{"pbkdf2 iterations 2^32-1", FormatOptions{}, set(maxIterations, "keyslots", "0", "kdf", "iterations"), 0, "keyslot 0 pbkdf2 iterations", false},
		{"pbkdf2 sha512", FormatOptions{}, set("sha512", "keyslots", "0", "kdf", "hash"), 0, "keyslot 0 pbkdf2 hash", false},
		{"AF hash sha1", FormatOptions{}, set("sha1", "keyslots", "0", "af", "hash"), 0, "keyslot 0 AF hash", false},
		{"digest iterations 2^32-1", FormatOptions{}, set(maxIterations, "digests", "0", "iterations"), 0, "digest 0 iterations", false},
		{"digest of 20 bytes", FormatOptions{}, digest("sha256", 20), 0, "digest 0 size (bytes)", false},
		{"digest sha512", FormatOptions{}, digest("sha512", 64), 0, "digest 0 hash", false},
		{"sector size 4096 → 512", FormatOptions{}, set(512, "segments", "0", "sector_size"), 0, "segment sector size", true},
		{"offset + 4096", FormatOptions{}, set(strconv.Itoa(DefaultDataOffset+4096), "segments", "0", "offset"), 0, "segment offset", true},
		{"fixed size", FormatOptions{}, set("1048576", "segments", "0", "size"), 0, "segment size", true},
		{"32-byte volume key", FormatOptions{KeySize: 32}, nil, 0, "keyslot 0 key size", true},
		{"5 keyslots", FormatOptions{}, nil, 4, "keyslot count", true},
		{"5 tokens", FormatOptions{Tokens: []Token{{Type: "t"}, {Type: "t"}, {Type: "t"}, {Type: "t"}, {Type: "t"}}}, nil, 0, "token count", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := enclaveFormatted(t, key, tt.opts)
			for i := range tt.adds {
				if _, err := AddKey(bg, f, key, []byte{byte(i + 1)}, &fastPBKDF2); err != nil {
					t.Fatal(err)
				}
			}
			if tt.mutate != nil {
				rewriteJSON(t, f, tt.mutate)
			}
			p := EnclavePolicy()
			_, runs, allocated, err := openCounting(t, f, key, &p)
			var pe *PolicyError
			if !errors.As(err, &pe) || !errors.Is(err, ErrPolicy) || pe.Field != tt.field {
				t.Fatalf("OpenWithPolicy: %v, want a PolicyError on %q", err, tt.field)
			}
			if runs != 0 || allocated > headerBudget {
				t.Errorf("refusal ran %d KDFs and allocated %d bytes (budget %d)", runs, allocated, headerBudget)
			}
			t.Log(err)
			if tt.opens {
				if _, err := Open(bg, f, key); err != nil {
					t.Errorf("Open without policy: %v (the policy is what refuses it)", err)
				}
			}
		})
	}
	t.Run("zero policy refuses everything", func(t *testing.T) {
		f, _ := enclaveFormatted(t, key, FormatOptions{})
		if _, err := OpenWithPolicy(bg, f, key, Policy{}); !errors.Is(err, ErrPolicy) {
			t.Fatalf("%v, want ErrPolicy", err)
		}
	})
	t.Run("token type not listed", func(t *testing.T) {
		f, _ := enclaveFormatted(t, key, FormatOptions{Tokens: []Token{kmsToken(0)}})
		p := EnclavePolicy()
		p.TokenTypes = []string{"systemd-tpm2"}
		var pe *PolicyError
		if _, err := OpenWithPolicy(bg, f, key, p); !errors.As(err, &pe) || pe.Field != "token 0 type" {
			t.Fatalf("%v, want a PolicyError on the token type", err)
		}
	})
}

// TestArgon2AboveCryptsetupCap: without a policy, argon2 memory above
// cryptsetup's 4 GiB cap is refused by validation, before any KDF runs.
func TestArgon2AboveCryptsetupCap(t *testing.T) {
	key := []byte("k")
	f, _ := formatted(t, key)
	rewriteJSON(t, f, func(m map[string]any) []byte {
		k := obj(m, "keyslots", "0", "kdf")
		delete(k, "hash")
		delete(k, "iterations")
		k["type"], k["time"], k["memory"], k["cpus"] = "argon2id", 4, maxArgon2Memory+1, 4
		return nil
	})
	_, runs, allocated, err := openCounting(t, f, key, nil)
	if !errors.Is(err, ErrCorruptHeader) || runs != 0 || allocated > headerBudget {
		t.Fatalf("Open: %v after %d KDF runs and %d bytes, want ErrCorruptHeader and none", err, runs, allocated)
	}
}

// argon2Fixture is a header cryptsetup 2.6.1 made with argon2id above the
// enclave's memory bound (both copies, no key material): luksFormat
// --pbkdf argon2id --pbkdf-memory 1049600 --pbkdf-force-iterations 4
// --pbkdf-parallel 1 with a 32-byte key file of zeros. Making it runs
// cryptsetup's 1 GiB argon2 (most of a minute on a busy 2-core machine),
// so it is stored; -update remakes it.
const (
	argon2Fixture       = "testdata/cryptsetup-2.6.1-argon2-1025MiB.hdr"
	argon2FixtureMemory = enclaveMaxArgon2Memory + 1024 // KiB
)

// TestPolicyRefusesCryptsetupArgon2: a header cryptsetup itself made with
// argon2id above the enclave's memory bound is refused before any KDF runs
// and without allocating its memory.
func TestPolicyRefusesCryptsetupArgon2(t *testing.T) {
	dir := t.TempDir()
	key := make([]byte, 32)
	if *update {
		cryptsetupPath(t)
		_, img := sparseFile(t, dir, "made", 20<<20)
		mustCryptsetup(t, "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "argon2id",
			"--pbkdf-memory", strconv.Itoa(argon2FixtureMemory), "--pbkdf-force-iterations", "4", "--pbkdf-parallel", "1",
			"--key-file", writeKeyFile(t, dir, "k", key), img)
		if err := os.WriteFile(argon2Fixture, fileBytes(t, img)[:2*metadataSize], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, img := sparseFile(t, dir, "img", 20<<20)
	if _, err := f.WriteAt(fileBytes(t, argon2Fixture), 0); err != nil {
		t.Fatal(err)
	}
	if cryptsetupInstalled() {
		if dump := mustCryptsetup(t, "luksDump", img); !strings.Contains(dump, "Memory:     "+strconv.Itoa(argon2FixtureMemory)) {
			t.Fatalf("cryptsetup does not read the fixture's argon2 memory:\n%s", dump)
		}
	}
	in, err := ReadInfo(bg, f)
	if err != nil {
		t.Fatal(err)
	}
	if got := in.Slots[0].KDF; got.Type != Argon2id || got.Memory != argon2FixtureMemory {
		t.Fatalf("fixture has %+v, want argon2id with %d KiB", got, argon2FixtureMemory)
	}
	p := EnclavePolicy()
	_, runs, allocated, err := openCounting(t, f, key, &p)
	var pe *PolicyError
	if !errors.As(err, &pe) || pe.Field != "keyslot 0 argon2 memory (KiB)" || pe.Value != strconv.Itoa(argon2FixtureMemory) {
		t.Fatalf("OpenWithPolicy: %v, want a PolicyError on argon2 memory %d", err, argon2FixtureMemory)
	}
	if runs != 0 || allocated > headerBudget {
		t.Errorf("refusal ran %d KDFs and allocated %d bytes (budget %d)", runs, allocated, headerBudget)
	}
	t.Log(err)
}

// TestMachineKeyKDFOracle: a volume formatted with MachineKeyKDF opens in
// cryptsetup with the key, and cryptsetup reports PBKDF2 at 1000
// iterations.
func TestMachineKeyKDFOracle(t *testing.T) {
	cryptsetupPath(t)
	dir := t.TempDir()
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i * 7)
	}
	f, img := sparseFile(t, dir, "img", 20<<20)
	v, err := Format(bg, f, key, &FormatOptions{KDF: MachineKeyKDF()})
	if err != nil {
		t.Fatal(err)
	}
	kf := writeKeyFile(t, dir, "k", key)
	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", kf, img)
	dump := mustCryptsetup(t, "luksDump", img)
	for _, s := range []string{"PBKDF:      pbkdf2", "Hash:       sha256", "Iterations: 1000"} {
		if !strings.Contains(dump, s) {
			t.Errorf("luksDump lacks %q:\n%s", s, dump)
		}
	}
	if got := dumpVolumeKey(t, img, kf); !sameBytes(got, v.Key) {
		t.Errorf("cryptsetup volume key differs")
	}
}

// swapDevice reads from one image, then, after swap, from another: a
// parent serving one header to the check and another to the unlock.
type swapDevice struct{ cur, next *os.File }

func (d *swapDevice) ReadAt(p []byte, off int64) (int, error) { return d.cur.ReadAt(p, off) }
func (d *swapDevice) Size() int64                             { return 20 << 20 }
func (d *swapDevice) swap()                                   { d.cur = d.next }

// TestCheckedHeaderReadsOnce: ReadWithPolicy then Open unlocks the header
// that was checked, even when the device serves another one afterwards
// (same keyslots, data moved 1 MiB further).
func TestCheckedHeaderReadsOnce(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	a, _ := enclaveFormatted(t, key, FormatOptions{Tokens: []Token{kmsToken(0)}})
	b, bPath := sparseFile(t, t.TempDir(), "other", 20<<20)
	buf := make([]byte, 20<<20)
	if _, err := a.ReadAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.WriteAt(buf, 0); err != nil {
		t.Fatal(err)
	}
	var moved int64
	rewriteJSON(t, b, func(m map[string]any) []byte {
		seg := obj(m, "segments", "0")
		off, err := strconv.ParseInt(seg["offset"].(string), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		moved = off + 1<<20
		seg["offset"] = strconv.FormatInt(moved, 10)
		return nil
	})
	// Open alone takes the second header (data moved: garbage served),
	// the policy refuses it: a re-read would do one or the other.
	if other, err := Open(bg, b, key); err != nil || other.Offset != moved {
		t.Fatalf("%s alone: Open = %+v, %v; want it opened with offset %d", bPath, other, err, moved)
	}
	if _, err := OpenWithPolicy(bg, b, key, EnclavePolicy()); !errors.Is(err, ErrPolicy) {
		t.Fatalf("%s alone: OpenWithPolicy = %v, want ErrPolicy", bPath, err)
	}

	dev := &swapDevice{cur: a, next: b}
	hdr, err := ReadWithPolicy(bg, dev, EnclavePolicy())
	if err != nil {
		t.Fatal(err)
	}
	dev.swap()
	v, err := hdr.Open(bg, key)
	if err != nil {
		t.Fatalf("Open of the checked header: %v", err)
	}
	defer v.Zero()
	if v.Offset != hdr.Info.Offset || v.Offset == moved || v.UUID != hdr.Info.UUID {
		t.Errorf("opened offset %d uuid %s; want the checked header's %d %s (the second header's is %d)", v.Offset, v.UUID, hdr.Info.Offset, hdr.Info.UUID, moved)
	}
	if _, err := hdr.Open(bg, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("Open with no key = %v, want ErrInvalidArgument", err)
	}
}
