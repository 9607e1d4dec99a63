package crypt

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

func TestKeyManagementErrors(t *testing.T) {
	key := []byte("first")
	t.Run("AddKey with wrong key", func(t *testing.T) {
		f, _ := formatted(t, key)
		if _, err := AddKey(bg, f, []byte("nope"), []byte("second"), &fastPBKDF2); !errors.Is(err, ErrWrongKey) {
			t.Fatalf("%v, want ErrWrongKey", err)
		}
	})
	t.Run("RemoveKey of the last slot", func(t *testing.T) {
		f, _ := formatted(t, key)
		if _, err := RemoveKey(bg, f, key); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%v, want ErrInvalidArgument", err)
		}
		if _, err := Open(bg, f, key); err != nil {
			t.Fatalf("refused RemoveKey damaged the volume: %v", err)
		}
	})
	t.Run("KillSlot of an empty slot", func(t *testing.T) {
		f, _ := formatted(t, key)
		if err := KillSlot(bg, f, 5); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%v, want ErrInvalidArgument", err)
		}
	})
	t.Run("keyslots area full", func(t *testing.T) {
		// 1 MiB data offset: 1015808 bytes of keyslots area hold three
		// 258048-byte areas.
		f, _ := sparseFile(t, t.TempDir(), "img", 4<<20)
		if _, err := Format(bg, f, key, &FormatOptions{KDF: fastPBKDF2, DataOffset: 1 << 20}); err != nil {
			t.Fatal(err)
		}
		for i := 1; i < 3; i++ {
			if slot, err := AddKey(bg, f, key, []byte{byte('a' + i)}, &fastPBKDF2); err != nil || slot != i {
				t.Fatalf("AddKey #%d = %d, %v", i, slot, err)
			}
		}
		if _, err := AddKey(bg, f, key, []byte("z"), &fastPBKDF2); !errors.Is(err, ErrNoFreeSlot) {
			t.Fatalf("fourth AddKey: %v, want ErrNoFreeSlot", err)
		}
		for i := 1; i < 3; i++ {
			if v, err := Open(bg, f, []byte{byte('a' + i)}); err != nil || v.Keyslot != i {
				t.Fatalf("Open with key %d: %v", i, err)
			}
		}
	})
}

// TestInterruptedUpdate: an update writes the secondary first; if it stops
// before the primary, the device holds an old valid primary and a newer
// secondary. Open follows the higher sequence id, as cryptsetup does.
func TestInterruptedUpdate(t *testing.T) {
	key, newKey := []byte("old"), []byte("new")
	f, _ := formatted(t, key)
	oldPrimary := make([]byte, metadataSize)
	if _, err := f.ReadAt(oldPrimary, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := AddKey(bg, f, key, newKey, &fastPBKDF2); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(oldPrimary, 0); err != nil { // undo the primary write
		t.Fatal(err)
	}
	in, err := ReadInfo(bg, f)
	if err != nil {
		t.Fatal(err)
	}
	if in.HeaderOffset != metadataSize || in.SeqID != 2 || len(in.Keyslots) != 2 {
		t.Fatalf("ReadInfo = %+v, want the secondary (seqid 2, two keyslots)", in)
	}
	if _, err := Open(bg, f, newKey); err != nil {
		t.Fatalf("Open with the key of the newer copy: %v", err)
	}
	// cryptsetup agrees (and, unlike us, repairs the primary while at it).
	if _, err := cryptsetup(t, "open", "--test-passphrase", "--key-file", writeKeyFile(t, t.TempDir(), "k", newKey), f.Name()); err != nil {
		t.Fatalf("cryptsetup does not follow the newer secondary: %v", err)
	}
}

func TestFormatWithVolumeKey(t *testing.T) {
	vk := bytes.Repeat([]byte{0x5a}, 32)
	f, p := sparseFile(t, t.TempDir(), "img", 20<<20)
	v, err := Format(bg, f, []byte("k"), &FormatOptions{KDF: fastPBKDF2, VolumeKey: vk})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(v.Key, vk) {
		t.Fatalf("Format key %x, want the given %x", v.Key, vk)
	}
	vk[0] = 0 // Format must have copied it
	if v.Key[0] != 0x5a {
		t.Fatal("Volume aliases the caller's VolumeKey")
	}
	if got := dumpVolumeKey(t, p, writeKeyFile(t, t.TempDir(), "k", []byte("k"))); !bytes.Equal(got, v.Key) {
		t.Fatalf("cryptsetup volume key %x, want %x", got, v.Key)
	}
	// 20 MiB device - 16 MiB offset = 4 MiB = 8192 sectors of 512 bytes.
	if got := v.Table("/dev/nbd0"); got != "0 8192 crypt aes-xts-plain64 5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a 0 /dev/nbd0 32768 1 sector_size:4096" {
		t.Fatalf("Table = %q", got)
	}
}

func TestFormatLeavesDataAlone(t *testing.T) {
	f, _ := sparseFile(t, t.TempDir(), "img", 20<<20)
	marker := []byte("data area must survive Format")
	if _, err := f.WriteAt(marker, DefaultDataOffset); err != nil {
		t.Fatal(err)
	}
	// Stale bytes in the keyslots area must not survive.
	if _, err := f.WriteAt([]byte("stale key material"), 8<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := Format(bg, f, []byte("k"), &FormatOptions{KDF: fastPBKDF2}); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(marker))
	f.ReadAt(got, DefaultDataOffset)
	if !bytes.Equal(got, marker) {
		t.Fatal("Format wrote into the data area")
	}
	stale := make([]byte, 18)
	f.ReadAt(stale, 8<<20)
	if !bytes.Equal(stale, make([]byte, 18)) {
		t.Fatal("Format left stale bytes in the keyslots area")
	}
}

func TestFormatCanceled(t *testing.T) {
	f, _ := sparseFile(t, t.TempDir(), "img", 20<<20)
	ctx, cancel := contextWithCancel()
	cancel()
	if _, err := Format(ctx, f, []byte("k"), &FormatOptions{KDF: fastPBKDF2}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Format with canceled context: %v", err)
	}
	if _, err := ReadInfo(bg, f); !errors.Is(err, ErrNotLUKS) {
		t.Fatalf("canceled Format left a header: %v", err)
	}
}
