package enclave

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/internal/kmsenv"
	"github.com/enclave-storage/enclave-storage/keys"
	"github.com/enclave-storage/enclave-storage/keys/kms"
)

const sealedTestSize = 32 << 20

// blankRun returns a blank run image file.
func blankRun(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "run.img"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(sealedTestSize); err != nil {
		t.Fatal(err)
	}
	return f
}

func imageSum(t *testing.T, f *os.File) [32]byte {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, sealedTestSize)); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// sealedRun formats a blank image through unlockSealed and returns it.
func sealedRun(t *testing.T, s keys.Sealer) (*os.File, []byte) {
	t.Helper()
	f := blankRun(t)
	vol, fresh, err := unlockSealed(context.Background(), f, "run", s, RunBlank, nil, slog.New(slog.DiscardHandler))
	if err != nil || !fresh {
		t.Fatalf("unlockSealed on a blank volume: fresh %v, %v", fresh, err)
	}
	defer vol.Zero()
	return f, append([]byte(nil), vol.Key...)
}

func TestUnlockSealed(t *testing.T) {
	ctx := context.Background()
	env := kmsenv.New(t)
	s := env.Sealer(kms.Retry{})
	f, volKey := sealedRun(t, s)
	if state, err := ClassifyRun(f, sealedTestSize); err != nil || state != RunLUKS {
		t.Fatalf("after the first unlock: %v, %v", state, err)
	}
	info, err := crypt.ReadInfo(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Tokens) != 1 || info.Tokens[0].Type != kms.TokenType || len(info.Tokens[0].Keyslots) != 1 || info.Tokens[0].Keyslots[0] != 0 {
		t.Fatalf("tokens %+v, want one %s token on keyslot 0", info.Tokens, kms.TokenType)
	}
	var ec map[string]string
	json.Unmarshal(info.Tokens[0].Fields["context"], &ec)
	if ec[kms.ContextUUID] != info.UUID {
		t.Errorf("token context %v does not bind the header's UUID %s", ec, info.UUID)
	}
	before := imageSum(t, f)
	vol, fresh, err := unlockSealed(ctx, f, "run", s, RunLUKS, nil, slog.New(slog.DiscardHandler))
	if err != nil || fresh {
		t.Fatalf("second unlock: fresh %v, %v", fresh, err)
	}
	defer vol.Zero()
	if !bytes.Equal(vol.Key, volKey) {
		t.Fatal("the second unlock opened another volume key")
	}
	if imageSum(t, f) != before {
		t.Error("unlocking an existing volume wrote to it")
	}

	// The oracle: cryptsetup reads the header with our token and opens
	// keyslot 0 with the data key KMS releases.
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed (apt-get install cryptsetup-bin); oracle part skipped")
	}
	dump, err := exec.Command(cs, "luksDump", f.Name()).CombinedOutput()
	if err != nil {
		t.Fatalf("cryptsetup luksDump: %v\n%s", err, dump)
	}
	for _, want := range []string{"enclave-storage-kms", "PBKDF:      pbkdf2", "Keyslot:    0"} {
		if !strings.Contains(string(dump), want) {
			t.Errorf("cryptsetup luksDump lacks %q:\n%s", want, dump)
		}
	}
	key, err := s.Unseal(ctx, keys.Binding{UUID: info.UUID, Export: "run"}, keys.Sealed{Type: info.Tokens[0].Type, Fields: info.Tokens[0].Fields})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(cs, "open", "--test-passphrase", "--key-slot", "0", "--key-file", keyFile, f.Name()).CombinedOutput(); err != nil {
		t.Fatalf("cryptsetup open --test-passphrase with the unsealed key: %v\n%s", err, out)
	}
}

// TestUnlockSealedFailures: every failure leaves the volume as it was
// (blank stays blank, a header is never rewritten) and says why.
func TestUnlockSealedFailures(t *testing.T) {
	ctx := context.Background()
	env := kmsenv.New(t)
	good := env.Sealer(kms.Retry{})
	luks, _ := sealedRun(t, good)
	other, _ := sealedRun(t, good) // its token is bound to another UUID

	// A header with its token's blob corrupted.
	badBlob, _ := sealedRun(t, good)
	info, err := crypt.ReadInfo(ctx, badBlob)
	if err != nil {
		t.Fatal(err)
	}
	tok := info.Tokens[0]
	var blob []byte
	json.Unmarshal(tok.Fields["ciphertext"], &blob)
	blob[len(blob)-20] ^= 1
	tok.Fields["ciphertext"], _ = json.Marshal(blob)
	if err := crypt.RemoveToken(ctx, badBlob, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := crypt.AddToken(ctx, badBlob, tok); err != nil {
		t.Fatal(err)
	}

	// A header carrying another volume's token.
	foreignTok := blankRun(t)
	oinfo, err := crypt.ReadInfo(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crypt.Format(ctx, foreignTok, bytes.Repeat([]byte{7}, 32), &crypt.FormatOptions{KDF: crypt.MachineKeyKDF(), Tokens: []crypt.Token{oinfo.Tokens[0]}}); err != nil {
		t.Fatal(err)
	}

	// A header without a token (formatted with some other key).
	noToken := blankRun(t)
	if _, err := crypt.Format(ctx, noToken, bytes.Repeat([]byte{7}, 32), &crypt.FormatOptions{KDF: crypt.MachineKeyKDF()}); err != nil {
		t.Fatal(err)
	}

	// A header with our token but 512-byte sectors: outside the policy.
	smallSectors := blankRun(t)
	linfo, err := crypt.ReadInfo(ctx, luks)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := crypt.Format(ctx, smallSectors, bytes.Repeat([]byte{7}, 32), &crypt.FormatOptions{KDF: crypt.MachineKeyKDF(), SectorSize: 512, Tokens: []crypt.Token{linfo.Tokens[0]}}); err != nil {
		t.Fatal(err)
	}

	wrongPCRs := func() { env.KMS.SetRequiredPCRs(map[int][]byte{0: kmsenv.PCR(0xee), 1: env.PCRs[1], 2: env.PCRs[2]}) }
	tests := []struct {
		name      string
		f         *os.File
		state     RunState
		setup     func()
		unreach   bool
		want      error
		namesPCRs bool // the error names the key and PCRs; KMS was asked
	}{
		{"blank, KMS refuses (wrong PCRs)", blankRun(t), RunBlank, wrongPCRs, false, kms.ErrRefused, true},
		{"blank, KMS unreachable", blankRun(t), RunBlank, nil, true, kms.ErrUnreachable, true},
		{"LUKS, KMS refuses (wrong PCRs)", luks, RunLUKS, wrongPCRs, false, kms.ErrRefused, true},
		{"LUKS, KMS unreachable", luks, RunLUKS, nil, true, kms.ErrUnreachable, true},
		{"LUKS, blob does not decrypt", badBlob, RunLUKS, nil, false, kms.ErrRefused, true},
		{"LUKS, another volume's token", foreignTok, RunLUKS, nil, false, kms.ErrToken, false},
		{"LUKS, no token", noToken, RunLUKS, nil, false, ErrNoToken, false},
		{"LUKS, header outside the policy", smallSectors, RunLUKS, nil, false, crypt.ErrPolicy, false},
		{"foreign data", blankRun(t), RunForeign, nil, false, ErrForeignRun, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.KMS.SetRequiredPCRs(env.PCRs)
			if tt.setup != nil {
				tt.setup()
			}
			s := env.Sealer(kmsenv.FastRetry())
			if tt.unreach {
				s = env.UnreachableSealer(t, kmsenv.FastRetry())
			}
			before, dials := imageSum(t, tt.f), env.Dials.Load()
			vol, _, err := unlockSealed(ctx, tt.f, "run", s, tt.state, nil, slog.New(slog.DiscardHandler))
			if !errors.Is(err, tt.want) || vol != nil {
				t.Fatalf("unlockSealed = %v, %v; want %v", vol, err, tt.want)
			}
			if imageSum(t, tt.f) != before {
				t.Error("the failed unlock changed the run image")
			}
			if tt.namesPCRs && (!strings.Contains(err.Error(), kmsenv.KeyARN) || !strings.Contains(err.Error(), "PCR0=")) {
				t.Errorf("the error does not name the key and the PCRs: %v", err)
			}
			if asked := env.Dials.Load() != dials; asked != tt.namesPCRs {
				t.Errorf("KMS asked: %v, want %v", asked, tt.namesPCRs)
			}
			t.Logf("%v", err)
		})
	}
}
