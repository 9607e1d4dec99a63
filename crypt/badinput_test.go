package crypt

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// formatted returns a freshly formatted 20 MiB image (pbkdf2, fast).
func formatted(t *testing.T, key []byte) (*os.File, string) {
	t.Helper()
	f, p := sparseFile(t, t.TempDir(), "img", 20<<20)
	if _, err := Format(bg, f, key, &FormatOptions{KDF: fastPBKDF2}); err != nil {
		t.Fatal(err)
	}
	return f, p
}

// rewriteJSON replaces the JSON area of both header copies with raw (after
// mutate edits the decoded JSON) and reseals their checksums, so only the
// metadata is hostile.
func rewriteJSON(t *testing.T, f *os.File, mutate func(m map[string]any) []byte) {
	t.Helper()
	for _, off := range []int64{0, metadataSize} {
		buf := make([]byte, metadataSize)
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		js := buf[binHeaderSize:]
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(js[:bytes.IndexByte(js, 0)]))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatal(err)
		}
		raw := mutate(m)
		if raw == nil {
			var err error
			if raw, err = json.Marshal(m); err != nil {
				t.Fatal(err)
			}
		}
		clear(js)
		copy(js, raw)
		sealArea(buf)
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
	}
}

func obj(m map[string]any, path ...string) map[string]any {
	for _, p := range path {
		m = m[p].(map[string]any)
	}
	return m
}

func TestOpenRejectsBadInput(t *testing.T) {
	key := []byte("key")
	set := func(val any, path ...string) func(map[string]any) []byte {
		return func(m map[string]any) []byte {
			obj(m, path[:len(path)-1]...)[path[len(path)-1]] = val
			return nil
		}
	}
	jsonTests := []struct {
		name   string
		mutate func(map[string]any) []byte
		want   error
	}{
		{"keyslot offset overflows uint64", set("99999999999999999999", "keyslots", "0", "area", "offset"), ErrCorruptHeader},
		{"keyslot offset negative", set("-1", "keyslots", "0", "area", "offset"), ErrCorruptHeader},
		{"keyslot offset is a number", set(32768, "keyslots", "0", "area", "offset"), ErrCorruptHeader},
		{"keyslot area past keyslots area", set("1000000000000000", "keyslots", "0", "area", "offset"), ErrCorruptHeader},
		{"keyslot area too small", set("4096", "keyslots", "0", "area", "size"), ErrCorruptHeader},
		{"huge key size", set(1<<30, "keyslots", "0", "key_size"), ErrCorruptHeader},
		{"negative stripes", set(-4000, "keyslots", "0", "af", "stripes"), ErrUnsupported},
		{"segment offset max uint64", set("18446744073709551615", "segments", "0", "offset"), ErrCorruptHeader},
		{"segment offset inside metadata", set("4096", "segments", "0", "offset"), ErrCorruptHeader},
		{"segment offset 0 on an attached header", set("0", "segments", "0", "offset"), ErrCorruptHeader},
		{"segment past device end", set("1099511627776", "segments", "0", "size"), ErrCorruptHeader},
		{"segment offset + size overflow", func(m map[string]any) []byte {
			s := obj(m, "segments", "0")
			s["offset"], s["size"] = "9223372036854775296", "9223372036854775296"
			return nil
		}, ErrCorruptHeader},
		{"segment type linear", set("linear", "segments", "0", "type"), ErrUnsupported},
		{"segment cipher cbc", set("aes-cbc-essiv:sha256", "segments", "0", "encryption"), ErrUnsupported},
		{"iv_tweak set", set("8", "segments", "0", "iv_tweak"), ErrUnsupported},
		{"sector size 3000", set(3000, "segments", "0", "sector_size"), ErrCorruptHeader},
		{"kdf scrypt", set("scrypt", "keyslots", "0", "kdf", "type"), ErrUnsupported},
		{"keyslot type reencrypt", set("reencrypt", "keyslots", "0", "type"), ErrUnsupported},
		{"pbkdf2 iterations huge", set(1<<40, "keyslots", "0", "kdf", "iterations"), ErrCorruptHeader},
		{"digest of 1 byte", set("AA==", "digests", "0", "digest"), ErrCorruptHeader},
		{"digest of 31 bytes", set("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==", "digests", "0", "digest"), ErrCorruptHeader},
		{"digest salt of 1 byte", set("AA==", "digests", "0", "salt"), ErrCorruptHeader},
		{"digest iterations negative", set(-5, "digests", "0", "iterations"), ErrCorruptHeader},
		{"digest names missing keyslot", set([]string{"7"}, "digests", "0", "keyslots"), ErrCorruptHeader},
		{"json_size mismatch", set("4096", "config", "json_size"), ErrCorruptHeader},
		{"mandatory requirement", set(map[string]any{"mandatory": []string{"online-reencrypt-v2"}}, "config", "requirements"), ErrUnsupported},
		{"keyslot id 99", func(m map[string]any) []byte {
			ks := obj(m, "keyslots")
			ks["99"] = ks["0"]
			delete(ks, "0")
			return nil
		}, ErrCorruptHeader},
		{"two segments", func(m map[string]any) []byte {
			s := obj(m, "segments")
			s["1"] = s["0"]
			return nil
		}, ErrUnsupported},
		{"not an object", func(map[string]any) []byte { return []byte(`[1,2,3]`) }, ErrCorruptHeader},
		{"garbage", func(map[string]any) []byte { return []byte(`{"keyslots":`) }, ErrCorruptHeader},
		{"empty object", func(map[string]any) []byte { return []byte(`{}`) }, ErrCorruptHeader},
		{"no NUL terminator", func(map[string]any) []byte { return bytes.Repeat([]byte{' '}, metadataSize-binHeaderSize) }, ErrCorruptHeader},
	}
	for _, tt := range jsonTests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := formatted(t, key)
			rewriteJSON(t, f, tt.mutate)
			_, err := Open(bg, f, key)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
			t.Log(err)
		})
	}

	t.Run("zeros", func(t *testing.T) {
		f, _ := sparseFile(t, t.TempDir(), "z", 1<<20)
		if _, err := Open(bg, f, key); !errors.Is(err, ErrNotLUKS) {
			t.Fatalf("%v, want ErrNotLUKS", err)
		}
	})
	t.Run("empty device", func(t *testing.T) {
		if _, err := Open(bg, bytes.NewReader(nil), key); !errors.Is(err, ErrNotLUKS) {
			t.Fatalf("%v, want ErrNotLUKS", err)
		}
	})
	t.Run("truncated binary header", func(t *testing.T) {
		f, p := formatted(t, key)
		_ = f
		b := fileBytes(t, p)[:2048]
		if _, err := Open(bg, bytes.NewReader(b), key); !errors.Is(err, ErrTruncated) {
			t.Fatalf("%v, want ErrTruncated", err)
		}
	})
	t.Run("truncated JSON area", func(t *testing.T) {
		_, p := formatted(t, key)
		b := fileBytes(t, p)[:8192]
		if _, err := Open(bg, bytes.NewReader(b), key); !errors.Is(err, ErrTruncated) {
			t.Fatalf("%v, want ErrTruncated", err)
		}
	})
	t.Run("truncated keyslot area", func(t *testing.T) {
		_, p := formatted(t, key)
		b := fileBytes(t, p)[:64<<10]
		if _, err := OpenDetached(bg, bytes.NewReader(b), 20<<20, key); !errors.Is(err, ErrTruncated) {
			t.Fatalf("%v, want ErrTruncated", err)
		}
	})
	t.Run("checksum mismatch in both copies", func(t *testing.T) {
		f, _ := formatted(t, key)
		for _, off := range []int64{offLabel, metadataSize + offLabel} {
			f.WriteAt([]byte("tampered"), off)
		}
		_, err := Open(bg, f, key)
		if !errors.Is(err, ErrCorruptHeader) {
			t.Fatalf("%v, want ErrCorruptHeader", err)
		}
	})
	t.Run("LUKS1", func(t *testing.T) {
		dir := t.TempDir()
		_, p := sparseFile(t, dir, "l1", 4<<20)
		kf := writeKeyFile(t, dir, "k", key)
		mustCryptsetup(t, "luksFormat", "--batch-mode", "--type", "luks1", "--pbkdf-force-iterations", "1000", "--key-file", kf, p)
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := Open(bg, f, key); !errors.Is(err, ErrUnsupportedVersion) {
			t.Fatalf("%v, want ErrUnsupportedVersion", err)
		}
	})
	t.Run("empty key", func(t *testing.T) {
		f, _ := formatted(t, key)
		if _, err := Open(bg, f, nil); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%v, want ErrInvalidArgument", err)
		}
	})
	t.Run("canceled", func(t *testing.T) {
		f, _ := formatted(t, key)
		ctx, cancel := contextWithCancel()
		cancel()
		if _, err := Open(ctx, f, key); err == nil {
			t.Fatal("Open with canceled context succeeded")
		}
	})
}

func TestFormatRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		size int64
		opts FormatOptions
	}{
		{"device too small", 1 << 20, FormatOptions{KDF: fastPBKDF2}},
		{"unaligned offset", 20 << 20, FormatOptions{KDF: fastPBKDF2, DataOffset: 5001 * 512}},
		{"offset leaves no keyslot room", 20 << 20, FormatOptions{KDF: fastPBKDF2, DataOffset: 64 << 10}},
		{"sector size 300", 20 << 20, FormatOptions{KDF: fastPBKDF2, SectorSize: 300}},
		{"key size 48", 20 << 20, FormatOptions{KDF: fastPBKDF2, KeySize: 48}},
		{"argon2 time below cryptsetup minimum", 20 << 20, FormatOptions{KDF: KDF{Type: Argon2id, Time: 1, Memory: 32, Threads: 1}}},
		{"argon2 5 threads", 20 << 20, FormatOptions{KDF: KDF{Type: Argon2id, Time: 4, Memory: 64, Threads: 5}}},
		{"pbkdf2 10 iterations", 20 << 20, FormatOptions{KDF: KDF{Type: PBKDF2, Iterations: 10}}},
		{"unknown kdf", 20 << 20, FormatOptions{KDF: KDF{Type: "bcrypt"}}},
		{"bad uuid", 20 << 20, FormatOptions{KDF: fastPBKDF2, UUID: "not-a-uuid"}},
		{"long label", 20 << 20, FormatOptions{KDF: fastPBKDF2, Label: string(bytes.Repeat([]byte("x"), 48))}},
		{"data size not sector multiple", 20 << 20, FormatOptions{KDF: fastPBKDF2, DataSize: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := sparseFile(t, t.TempDir(), "img", tt.size)
			if _, err := Format(bg, f, []byte("k"), &tt.opts); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("Format: %v, want ErrInvalidArgument", err)
			}
		})
	}
}
