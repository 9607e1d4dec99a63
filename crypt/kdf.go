package crypt

import (
	"context"
	"crypto/hmac"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"hash"

	"golang.org/x/crypto/argon2"
)

// KDFType names a keyslot key derivation function.
type KDFType string

// Supported keyslot KDFs.
const (
	Argon2id KDFType = "argon2id"
	Argon2i  KDFType = "argon2i"
	PBKDF2   KDFType = "pbkdf2"
)

// KDF holds keyslot key derivation parameters. The zero value means
// DefaultKDF.
type KDF struct {
	Type KDFType
	// Argon2: Time is the iteration count, Memory the cost in KiB,
	// Threads the parallel cost.
	Time    uint32
	Memory  uint32
	Threads uint8
	// PBKDF2: Iterations and Hash ("sha256" when empty).
	Iterations uint32
	Hash       string
}

// defaultKDF is RFC 9106's second recommended argon2id setting (64 MiB,
// 4 lanes) with 4 passes instead of 3, cryptsetup's minimum. It is cheap
// enough for a small enclave; the keys come from a keys.Provider with full
// entropy, so the KDF is not what protects them.
var defaultKDF = KDF{Type: Argon2id, Time: 4, Memory: 64 << 10, Threads: 4}

// DefaultKDF returns the KDF Format and AddKey use when none is given:
// argon2id, 4 passes, 64 MiB, 4 lanes.
func DefaultKDF() KDF { return defaultKDF }

// MinMachineKeyLen is the shortest key MachineKeyKDF is meant for: 32
// bytes, 256 bits of entropy when a machine made them.
const MinMachineKeyLen = 32

// MachineKeyKDF returns PBKDF2-SHA256 with 1000 iterations, the least
// cryptsetup allows, for keys a machine generated with full entropy and at
// least MinMachineKeyLen bytes (a KMS data key, a random key, a key file):
// stretching cannot strengthen a 256-bit random key, so unlocking costs
// well under a millisecond and no memory instead of seconds and tens of
// MiB of argon2. systemd-cryptenroll enrolls TPM2, FIDO2 and PKCS#11 keys
// the same way. Passphrases a person chose need DefaultKDF.
func MachineKeyKDF() KDF { return KDF{Type: PBKDF2, Iterations: minPBKDF2Iter, Hash: "sha256"} }

// check validates k against cryptsetup's limits, so every header we write
// is one cryptsetup opens.
func (k KDF) check() error {
	switch k.Type {
	case Argon2id, Argon2i:
		if k.Time < minArgon2Time || k.Memory < minArgon2Memory || k.Memory > maxArgon2Memory ||
			k.Threads < 1 || k.Threads > maxArgon2Threads {
			return fmt.Errorf("%w: %s needs time ≥ %d, memory %d..%d KiB, threads 1..%d (got %d, %d, %d)",
				ErrInvalidArgument, k.Type, minArgon2Time, minArgon2Memory, maxArgon2Memory, maxArgon2Threads,
				k.Time, k.Memory, k.Threads)
		}
	case PBKDF2:
		if k.Iterations < minPBKDF2Iter {
			return fmt.Errorf("%w: pbkdf2 needs ≥ %d iterations (got %d)", ErrInvalidArgument, minPBKDF2Iter, k.Iterations)
		}
		if _, ok := hashByName(k.hash()); !ok {
			return fmt.Errorf("%w: pbkdf2 hash %q", ErrInvalidArgument, k.Hash)
		}
	default:
		return fmt.Errorf("%w: KDF type %q", ErrInvalidArgument, k.Type)
	}
	return nil
}

func (k KDF) hash() string {
	if k.Hash == "" {
		return "sha256"
	}
	return k.Hash
}

func (k KDF) toJSON(salt []byte) kdfJSON {
	j := kdfJSON{Type: string(k.Type), Salt: salt}
	if k.Type == PBKDF2 {
		j.Hash, j.Iterations = k.hash(), int64(k.Iterations)
	} else {
		j.Time, j.Memory, j.CPUs = int64(k.Time), int64(k.Memory), int64(k.Threads)
	}
	return j
}

// derive runs the KDF of a validated keyslot. PBKDF2 runs here and checks
// ctx as it goes. x/crypto/argon2 cannot be interrupted, so argon2 runs in
// its own goroutine and a cancelled ctx returns at once; that goroutine
// then finishes in the background, holding the keyslot's memory cost until
// it does. Validation caps that cost at cryptsetup's limits (4 GiB, and a
// time cost below 2^32); a caller facing untrusted headers bounds it far
// lower with a Policy, checked before any KDF runs.
func (k *kdfJSON) derive(ctx context.Context, password []byte, keyLen int) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if k.Type == "pbkdf2" {
		h, _ := hashByName(k.Hash)
		return pbkdf2Key(ctx, h, password, k.Salt, int(k.Iterations), keyLen)
	}
	type result struct {
		key []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		key, err := k.argon2(password, keyLen)
		ch <- result{key, err}
	}()
	select {
	case r := <-ch:
		return r.key, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (k *kdfJSON) argon2(password []byte, keyLen int) ([]byte, error) {
	switch k.Type {
	case "argon2id":
		return argon2.IDKey(password, k.Salt, uint32(k.Time), uint32(k.Memory), uint8(k.CPUs), uint32(keyLen)), nil
	case "argon2i":
		return argon2.Key(password, k.Salt, uint32(k.Time), uint32(k.Memory), uint8(k.CPUs), uint32(keyLen)), nil
	}
	return nil, unsupportedf("kdf %q", k.Type)
}

// pbkdf2CheckEvery is how many PBKDF2 iterations run between ctx checks:
// well under a millisecond of work, and negligible overhead.
const pbkdf2CheckEvery = 1 << 12

// pbkdf2Key is PBKDF2 (RFC 8018 section 5.2) with HMAC over h, checking
// ctx every pbkdf2CheckEvery iterations: a header may ask for up to 2^32-1
// iterations (hours), and crypto/pbkdf2 cannot be interrupted.
func pbkdf2Key(ctx context.Context, h func() hash.Hash, password, salt []byte, iter, keyLen int) ([]byte, error) {
	if iter < 1 || keyLen < 1 {
		return nil, fmt.Errorf("%w: pbkdf2 with %d iterations and %d-byte output", ErrInvalidArgument, iter, keyLen)
	}
	prf := hmac.New(h, password)
	hLen := prf.Size()
	blocks := (keyLen + hLen - 1) / hLen
	out := make([]byte, 0, blocks*hLen)
	u := make([]byte, 0, hLen)
	t := make([]byte, hLen)
	var idx [4]byte
	for b := 1; b <= blocks; b++ {
		prf.Reset()
		prf.Write(salt)
		binary.BigEndian.PutUint32(idx[:], uint32(b))
		prf.Write(idx[:])
		u = prf.Sum(u[:0])
		copy(t, u)
		for i := 1; i < iter; i++ {
			if i%pbkdf2CheckEvery == 0 {
				if err := ctx.Err(); err != nil {
					clear(t)
					clear(out)
					return nil, err
				}
			}
			prf.Reset()
			prf.Write(u)
			u = prf.Sum(u[:0])
			subtle.XORBytes(t, t, u)
		}
		out = append(out, t...)
	}
	clear(t)
	clear(u)
	return out[:keyLen], nil
}
