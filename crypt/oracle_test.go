package crypt

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFormatAcceptedByCryptsetup: headers we write pass luksDump and
// --test-passphrase, and cryptsetup recovers the volume key we return.
func TestFormatAcceptedByCryptsetup(t *testing.T) {
	cryptsetupPath(t)
	tests := []struct {
		name string
		opts FormatOptions
		dump []string // substrings luksDump must print
	}{
		{"argon2id 4096 default offset", FormatOptions{KDF: fastArgon2},
			[]string{"offset: 16777216 [bytes]", "sector: 4096 [bytes]", "PBKDF:      argon2id", "length: (whole device)"}},
		{"pbkdf2 512", FormatOptions{KDF: fastPBKDF2, SectorSize: 512},
			[]string{"PBKDF:      pbkdf2", "sector: 512 [bytes]", "Hash:       sha256"}},
		{"argon2i fixed size small offset label", FormatOptions{
			KDF: KDF{Type: Argon2i, Time: 4, Memory: 64, Threads: 2}, SectorSize: 1024,
			DataOffset: 2 << 20, DataSize: 1 << 20, Label: "run", Subsystem: "enclave",
			UUID: "0f8e2c1a-3b4d-4e5f-8a6b-7c8d9e0f1a2b"},
			[]string{"offset: 2097152 [bytes]", "length: 1048576 [bytes]", "\trun\n", "\tenclave\n",
				"\t0f8e2c1a-3b4d-4e5f-8a6b-7c8d9e0f1a2b\n", "PBKDF:      argon2i"}},
		{"aes-128-xts key", FormatOptions{KDF: fastPBKDF2, KeySize: 32},
			[]string{"Key:        256 bits"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f, img := sparseFile(t, dir, "img", 20<<20)
			key := []byte("correct horse battery staple")
			keyFile := writeKeyFile(t, dir, "key", key)
			wrongFile := writeKeyFile(t, dir, "wrong", []byte("wrong horse"))

			v, err := Format(bg, f, key, &tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			dump := mustCryptsetup(t, "luksDump", img)
			for _, s := range tt.dump {
				if !strings.Contains(dump, s) {
					t.Errorf("luksDump lacks %q:\n%s", s, dump)
				}
			}
			mustCryptsetup(t, "open", "--test-passphrase", "--key-file", keyFile, img)
			if out, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", wrongFile, img); err == nil {
				t.Errorf("cryptsetup accepted the wrong key:\n%s", out)
			}
			if got := dumpVolumeKey(t, img, keyFile); !sameBytes(got, v.Key) {
				t.Errorf("cryptsetup volume key %x, Format returned %x", got, v.Key)
			}
			// And our own Open agrees.
			o, err := Open(bg, f, key)
			if err != nil {
				t.Fatal(err)
			}
			if !sameBytes(o.Key, v.Key) || o.Params("DEV") != v.Params("DEV") || o.Size != v.Size {
				t.Errorf("Open = %+v, Format = %+v", o, v)
			}
			if _, err := Open(bg, f, []byte("wrong horse")); !errors.Is(err, ErrWrongKey) {
				t.Errorf("Open with wrong key: %v, want ErrWrongKey", err)
			}
		})
	}
}

// TestOpenCryptsetupFormatted: headers cryptsetup writes open with our code
// and yield the volume key cryptsetup reports.
func TestOpenCryptsetupFormatted(t *testing.T) {
	cryptsetupPath(t)
	fast := []string{"--pbkdf-force-iterations", "4", "--pbkdf-memory", "32", "--pbkdf-parallel", "1"}
	tests := []struct {
		name     string
		args     []string
		detached bool
		sector   int
		offset   int64
		dataSize int64 // expected Size on a 20 MiB data file
	}{
		{"argon2id 4096", append([]string{"--pbkdf", "argon2id", "--sector-size", "4096"}, fast...), false, 4096, 16 << 20, 4 << 20},
		{"argon2i 512", append([]string{"--pbkdf", "argon2i", "--sector-size", "512"}, fast...), false, 512, 16 << 20, 4 << 20},
		{"pbkdf2 512", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--sector-size", "512"}, false, 512, 16 << 20, 4 << 20},
		{"pbkdf2 sha512 aes-128", []string{"--pbkdf", "pbkdf2", "--hash", "sha512", "--pbkdf-force-iterations", "1000", "--key-size", "256"}, false, 4096, 16 << 20, 4 << 20},
		{"offset 8 MiB", append([]string{"--pbkdf", "argon2id", "--offset", "16384"}, fast...), false, 4096, 8 << 20, 12 << 20},
		{"detached header", append([]string{"--pbkdf", "argon2id", "--sector-size", "4096"}, fast...), true, 4096, 0, 20 << 20},
		{"detached header with offset", []string{"--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", "--offset", "2048", "--sector-size", "512"}, true, 512, 1 << 20, 19 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			data, img := sparseFile(t, dir, "img", 20<<20)
			key := []byte("passphrase from cryptsetup")
			keyFile := writeKeyFile(t, dir, "key", key)
			args := []string{"luksFormat", "--batch-mode", "--type", "luks2", "--key-file", keyFile}
			args = append(args, tt.args...)
			hdrPath := img
			if tt.detached {
				hdrPath = filepath.Join(dir, "hdr")
				args = append(args, "--header", hdrPath)
			}
			mustCryptsetup(t, append(args, img)...)
			want := dumpVolumeKey(t, hdrPath, keyFile)

			var v *Volume
			var err error
			if tt.detached {
				hf, err := os.Open(hdrPath)
				if err != nil {
					t.Fatal(err)
				}
				defer hf.Close()
				v, err = OpenDetached(bg, hf, 20<<20, key)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := OpenDetached(bg, hf, 20<<20, []byte("nope")); !errors.Is(err, ErrWrongKey) {
					t.Errorf("wrong key: %v, want ErrWrongKey", err)
				}
			} else {
				v, err = Open(bg, data, key)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := Open(bg, data, []byte("nope")); !errors.Is(err, ErrWrongKey) {
					t.Errorf("wrong key: %v, want ErrWrongKey", err)
				}
			}
			if !sameBytes(v.Key, want) {
				t.Fatalf("volume key %x, cryptsetup says %x", v.Key, want)
			}
			if v.SectorSize != tt.sector || v.Offset != tt.offset || v.Size != tt.dataSize || !v.Dynamic {
				t.Errorf("volume %+v: want sector %d offset %d size %d dynamic", v, tt.sector, tt.offset, tt.dataSize)
			}
			wantParams := fmt.Sprintf("aes-xts-plain64 %x 0 /dev/nbd1 %d", want, tt.offset/512)
			if tt.sector != 512 {
				wantParams += fmt.Sprintf(" 1 sector_size:%d", tt.sector)
			}
			if got := v.Params("/dev/nbd1"); got != wantParams {
				t.Errorf("Params = %q\nwant     %q", got, wantParams)
			}
			if out, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", writeKeyFile(t, dir, "w", []byte("nope")), hdrPath); err == nil {
				t.Errorf("cryptsetup accepted the wrong key:\n%s", out)
			}
		})
	}
}

// TestKeyRotationOracle: keys added and removed by us are seen by
// cryptsetup and vice versa; Wipe leaves nothing that opens.
func TestKeyRotationOracle(t *testing.T) {
	cryptsetupPath(t)
	dir := t.TempDir()
	f, img := sparseFile(t, dir, "img", 20<<20)
	oldKey, newKey, csKey := []byte("old key"), []byte("new key"), []byte("cryptsetup key")
	oldFile := writeKeyFile(t, dir, "old", oldKey)
	newFile := writeKeyFile(t, dir, "new", newKey)
	csFile := writeKeyFile(t, dir, "cs", csKey)

	v, err := Format(bg, f, oldKey, &FormatOptions{KDF: fastArgon2})
	if err != nil {
		t.Fatal(err)
	}
	slot, err := AddKey(bg, f, oldKey, newKey, &fastPBKDF2)
	if err != nil {
		t.Fatal(err)
	}
	if slot != 1 {
		t.Errorf("AddKey slot %d, want 1", slot)
	}
	mustCryptsetup(t, "open", "--test-passphrase", "--key-slot", "1", "--key-file", newFile, img)
	if got := dumpVolumeKey(t, img, newFile); !sameBytes(got, v.Key) {
		t.Fatalf("new key opens volume key %x, want %x", got, v.Key)
	}

	// cryptsetup adds a slot; we open with it.
	mustCryptsetup(t, "luksAddKey", "--batch-mode", "--key-file", oldFile, "--pbkdf", "argon2id",
		"--pbkdf-force-iterations", "4", "--pbkdf-memory", "32", img, csFile)
	o, err := Open(bg, f, csKey)
	if err != nil {
		t.Fatal(err)
	}
	if !sameBytes(o.Key, v.Key) || o.Keyslot != 2 {
		t.Errorf("cryptsetup's slot: key %x slot %d, want %x slot 2", o.Key, o.Keyslot, v.Key)
	}

	// Remove the old key; it must stop working everywhere.
	if slot, err := RemoveKey(bg, f, oldKey); err != nil || slot != 0 {
		t.Fatalf("RemoveKey = %d, %v", slot, err)
	}
	if _, err := Open(bg, f, oldKey); !errors.Is(err, ErrWrongKey) {
		t.Errorf("old key after RemoveKey: %v", err)
	}
	if out, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", oldFile, img); err == nil {
		t.Errorf("cryptsetup still accepts the removed key:\n%s", out)
	}
	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", newFile, img)

	// Freed area is reused.
	slot, err = AddKey(bg, f, newKey, oldKey, &fastPBKDF2)
	if err != nil || slot != 0 {
		t.Fatalf("re-add = %d, %v", slot, err)
	}
	mustCryptsetup(t, "open", "--test-passphrase", "--key-slot", "0", "--key-file", oldFile, img)

	if err := KillSlot(bg, f, 2); err != nil {
		t.Fatal(err)
	}
	if out, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", csFile, img); err == nil {
		t.Errorf("cryptsetup accepts killed slot 2:\n%s", out)
	}

	if err := Wipe(bg, f); err != nil {
		t.Fatal(err)
	}
	dump := mustCryptsetup(t, "luksDump", img)
	if strings.Contains(dump, ": luks2") {
		t.Errorf("keyslots survive Wipe:\n%s", dump)
	}
	for _, k := range []string{oldFile, newFile, csFile} {
		if out, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", k, img); err == nil {
			t.Errorf("cryptsetup opens wiped volume with %s:\n%s", k, out)
		}
	}
	if _, err := Open(bg, f, newKey); !errors.Is(err, ErrWrongKey) {
		t.Errorf("Open after Wipe: %v, want ErrWrongKey", err)
	}
	if in, err := ReadInfo(bg, f); err != nil || len(in.Keyslots) != 0 {
		t.Errorf("ReadInfo after Wipe = %+v, %v", in, err)
	}
}

// TestDamagedPrimary: a corrupt primary header is recovered from the
// secondary without writing, as cryptsetup does.
func TestDamagedPrimary(t *testing.T) {
	cryptsetupPath(t)
	dir := t.TempDir()
	f, img := sparseFile(t, dir, "img", 20<<20)
	key := []byte("k")
	keyFile := writeKeyFile(t, dir, "key", key)
	v, err := Format(bg, f, key, &FormatOptions{KDF: fastPBKDF2})
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte inside the primary JSON area.
	if _, err := f.WriteAt([]byte{'X'}, 4096+10); err != nil {
		t.Fatal(err)
	}
	before := fileBytes(t, img)
	o, err := Open(bg, f, key)
	if err != nil {
		t.Fatalf("Open with damaged primary: %v", err)
	}
	if !sameBytes(o.Key, v.Key) {
		t.Fatal("wrong key from secondary")
	}
	in, err := ReadInfo(bg, f)
	if err != nil || in.HeaderOffset != metadataSize {
		t.Errorf("ReadInfo = %+v, %v; want HeaderOffset %d", in, err, metadataSize)
	}
	if !sameBytes(before, fileBytes(t, img)) {
		t.Fatal("Open wrote to the device")
	}
	if got := dumpVolumeKey(t, img, keyFile); !sameBytes(got, v.Key) {
		t.Fatal("cryptsetup disagrees after primary damage")
	}

	// Wipe the primary entirely: still found by scanning.
	f2, img2 := sparseFile(t, dir, "img2", 20<<20)
	if _, err := Format(bg, f2, key, &FormatOptions{KDF: fastPBKDF2}); err != nil {
		t.Fatal(err)
	}
	if err := zeroRange(bg, f2, 0, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(bg, f2, key); err != nil {
		t.Fatalf("Open with zeroed primary: %v", err)
	}
	_ = img2

	// Both damaged: corrupt. (cryptsetup repaired the primary above: it
	// writes on load, we do not.)
	for _, off := range []int64{4096 + 10, metadataSize + 4096 + 10} {
		if _, err := f.WriteAt([]byte{'X'}, off); err != nil {
			t.Fatal(err)
		}
	}
	_, err = Open(bg, f, key)
	var he *HeaderError
	if !errors.Is(err, ErrCorruptHeader) || !errors.As(err, &he) || he.Offset != 0 {
		t.Fatalf("both copies damaged: %v, want ErrCorruptHeader at offset 0", err)
	}
}
