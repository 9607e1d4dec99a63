package enclave

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/keys"
)

// ErrNoToken: the run volume holds a LUKS2 header but no token on keyslot
// 0 for a sealed (kms:) key, so there is no blob to unseal. The volume is
// not touched and not reformatted: something other than this agent wrote
// the header, and guessing would destroy data.
var ErrNoToken = errors.New("enclave: the run volume's LUKS2 header holds no sealed-key token on keyslot 0; refusing to guess (was it formatted with another key?)")

// sealedSlot is the keyslot the sealed key opens and its token names.
const sealedSlot = 0

// unlockSealed is OpenRun's key step for a key sealed in the header
// (keys.Sealer, the kms: provider). A blank volume gets a new UUID, a
// fresh key sealed to that UUID and the export, and a LUKS2 header whose
// keyslot 0 (PBKDF2 at the machine-key cost) carries the sealed blob as a
// token, all written by one crypt.Format: if sealing fails, nothing is
// written. A LUKS volume's header must pass crypt.EnclavePolicy (checked
// before KMS is asked, and again before the KDF runs) and carry exactly one
// token of the sealer's type on keyslot 0, whose blob is unsealed; it is
// never written. It returns the opened volume and
// whether it was formatted.
func unlockSealed(ctx context.Context, f *os.File, export string, s keys.Sealer, state RunState, opts *crypt.FormatOptions, log *slog.Logger) (*crypt.Volume, bool, error) {
	switch state {
	case RunBlank:
		uuid, err := crypt.NewUUID(rand.Reader)
		if err != nil {
			return nil, false, fmt.Errorf("enclave: %w", err)
		}
		t0 := time.Now()
		key, sealed, err := s.Seal(ctx, keys.Binding{UUID: uuid, Export: export})
		if err != nil {
			return nil, false, fmt.Errorf("enclave: sealing a key for the blank run volume %s (nothing written): %w", f.Name(), err)
		}
		defer clear(key)
		t1 := time.Now()
		var o crypt.FormatOptions
		if opts != nil {
			o = *opts
		}
		o.UUID, o.KDF = uuid, crypt.MachineKeyKDF()
		o.Tokens = []crypt.Token{{Type: sealed.Type, Keyslots: []int{sealedSlot}, Fields: sealed.Fields}}
		vol, err := crypt.Format(ctx, f, key, &o)
		if err != nil {
			return nil, false, fmt.Errorf("enclave: formatting LUKS2 on %s: %w", f.Name(), err)
		}
		log.Info("run volume key sealed", "uuid", uuid, "seal_ms", t1.Sub(t0).Milliseconds(), "format_ms", time.Since(t1).Milliseconds())
		return vol, true, nil
	case RunLUKS:
		policy := crypt.EnclavePolicy()
		policy.TokenTypes = []string{s.TokenType()}
		// Read and check the header once, and open that same header: the
		// parent could serve another header to a second read, with another
		// token or weaker parameters than the ones checked.
		hdr, err := crypt.ReadWithPolicy(ctx, f, policy)
		if err != nil {
			return nil, false, fmt.Errorf("enclave: the LUKS2 header of %s (left untouched): %w", f.Name(), err)
		}
		info := hdr.Info
		var found []crypt.Token
		for _, t := range info.Tokens {
			if t.Type == s.TokenType() && slices.Contains(t.Keyslots, sealedSlot) {
				found = append(found, t)
			}
		}
		if len(found) != 1 {
			return nil, false, fmt.Errorf("%w: %s has %d", ErrNoToken, f.Name(), len(found))
		}
		t := found[0]
		t0 := time.Now()
		key, err := s.Unseal(ctx, keys.Binding{UUID: info.UUID, Export: export}, keys.Sealed{Type: t.Type, Fields: t.Fields})
		if err != nil {
			return nil, false, fmt.Errorf("enclave: unsealing the key of run volume %s (left untouched): %w", f.Name(), err)
		}
		defer clear(key)
		t1 := time.Now()
		vol, err := hdr.Open(ctx, key)
		if errors.Is(err, crypt.ErrWrongKey) {
			return nil, false, fmt.Errorf("%w: %s: the unsealed key opens no keyslot", ErrWrongKey, f.Name())
		}
		if err != nil {
			return nil, false, fmt.Errorf("enclave: unlocking %s: %w", f.Name(), err)
		}
		// open_ms is the keyslot's KDF: the time from key in hand to
		// volume open.
		log.Info("run volume key unsealed", "uuid", info.UUID, "unseal_ms", t1.Sub(t0).Milliseconds(), "open_ms", time.Since(t1).Milliseconds())
		return vol, false, nil
	default:
		return nil, false, fmt.Errorf("%w: %s", ErrForeignRun, f.Name())
	}
}
