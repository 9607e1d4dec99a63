package kms_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	awskms "github.com/aws/aws-sdk-go-v2/service/kms"

	"github.com/enclave-storage/enclave-storage/internal/kmsenv"
	"github.com/enclave-storage/enclave-storage/keys"
	"github.com/enclave-storage/enclave-storage/keys/kms"
)

var vol = keys.Binding{UUID: "6f1c2b9e-3a4d-4e5f-8a7b-1c2d3e4f5a6b", Export: "run"}

// counting counts the KMS calls a Sealer makes.
type counting struct {
	kms.API
	calls atomic.Int64
}

func (c *counting) GenerateDataKey(ctx context.Context, in *awskms.GenerateDataKeyInput, o ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
	c.calls.Add(1)
	return c.API.GenerateDataKey(ctx, in, o...)
}

func (c *counting) Decrypt(ctx context.Context, in *awskms.DecryptInput, o ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	c.calls.Add(1)
	return c.API.Decrypt(ctx, in, o...)
}

func TestSealUnseal(t *testing.T) {
	ctx := context.Background()
	env := kmsenv.New(t)
	s := env.Sealer(kms.Retry{})
	key, sealed, err := s.Seal(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != kms.KeySize || bytes.Equal(key, make([]byte, kms.KeySize)) {
		t.Fatalf("data key %x", key)
	}
	if sealed.Type != kms.TokenType {
		t.Errorf("token type %q", sealed.Type)
	}
	var arn string
	var ec map[string]string
	json.Unmarshal(sealed.Fields["key_arn"], &arn)
	json.Unmarshal(sealed.Fields["context"], &ec)
	if arn != kmsenv.KeyARN || ec[kms.ContextUUID] != vol.UUID || ec[kms.ContextExport] != vol.Export {
		t.Errorf("token fields %s", sealed.Fields)
	}
	if bytes.Contains(mustJSON(t, sealed.Fields), key) || strings.Contains(string(mustJSON(t, sealed.Fields)), hex.EncodeToString(key)) {
		t.Fatal("the token holds the data key")
	}
	// Unseal twice: each makes a fresh RSA key and attestation.
	for i := range 2 {
		got, err := s.Unseal(ctx, vol, sealed)
		if err != nil {
			t.Fatalf("Unseal %d: %v", i, err)
		}
		if !bytes.Equal(got, key) {
			t.Fatalf("Unseal %d = %x, want %x", i, got, key)
		}
	}
	// Another Seal gives another key.
	other, _, err := s.Seal(ctx, vol)
	if err != nil || bytes.Equal(other, key) {
		t.Fatalf("second Seal: %x, %v", other, err)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFailures: each failure names the key and the PCRs sent, and wraps
// the kind callers branch on; refusals are never retried.
func TestFailures(t *testing.T) {
	ctx := context.Background()
	env := kmsenv.New(t)
	_, sealed, err := env.Sealer(kms.Retry{}).Seal(ctx, vol)
	if err != nil {
		t.Fatal(err)
	}
	corrupt := keys.Sealed{Type: sealed.Type, Fields: map[string]json.RawMessage{}}
	for k, v := range sealed.Fields {
		corrupt.Fields[k] = v
	}
	var blob []byte
	json.Unmarshal(sealed.Fields["ciphertext"], &blob)
	blob[len(blob)/2] ^= 1
	corrupt.Fields["ciphertext"] = mustJSON(t, blob)

	tests := []struct {
		name      string
		setup     func()
		unreach   bool
		roots     *x509.CertPool // nil: the fake's CA
		binding   keys.Binding
		sealed    keys.Sealed
		want      error
		wantCalls int64
		namesPCRs bool
	}{
		{"wrong PCRs", func() { env.KMS.SetRequiredPCRs(map[int][]byte{0: kmsenv.PCR(0xee)}) }, false, nil, vol, sealed, kms.ErrRefused, 1, true},
		{"unreachable", nil, true, nil, vol, sealed, kms.ErrUnreachable, int64(kmsenv.FastRetry().Attempts), true},
		{"blob does not decrypt", nil, false, nil, vol, corrupt, kms.ErrRefused, 1, true},
		{"KMS outage outlasting the retries", func() { env.KMS.SetFailures(100) }, false, nil, vol, sealed, kms.ErrUnreachable, int64(kmsenv.FastRetry().Attempts), true},
		{"KMS outage shorter than the retries", func() { env.KMS.SetFailures(2) }, false, nil, vol, sealed, nil, 3, false},
		{"TLS certificate from an untrusted CA", nil, false, x509.NewCertPool(), vol, sealed, kms.ErrUnreachable, 1, true},
		{"another volume's token", nil, false, nil, keys.Binding{UUID: "00000000-0000-4000-8000-000000000000", Export: "run"}, sealed, kms.ErrToken, 0, false},
		{"another export's token", nil, false, nil, keys.Binding{UUID: vol.UUID, Export: "other"}, sealed, kms.ErrToken, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env.KMS.SetRequiredPCRs(env.PCRs)
			env.KMS.SetFailures(0)
			if tt.setup != nil {
				tt.setup()
			}
			s := env.Sealer(kmsenv.FastRetry())
			if tt.unreach {
				s = env.UnreachableSealer(t, kmsenv.FastRetry())
			}
			if tt.roots != nil {
				s = env.SealerTrusting(tt.roots, kmsenv.FastRetry())
			}
			c := &counting{API: s.KMS}
			s.KMS = c
			key, err := s.Unseal(ctx, tt.binding, tt.sealed)
			if n := c.calls.Load(); n != tt.wantCalls {
				t.Errorf("%d KMS calls, want %d", n, tt.wantCalls)
			}
			if tt.want == nil {
				if err != nil || len(key) != kms.KeySize {
					t.Fatalf("Unseal = %x, %v; want the key after the retries", key, err)
				}
				return
			}
			if !errors.Is(err, tt.want) || key != nil {
				t.Fatalf("Unseal = %x, %v; want %v", key, err, tt.want)
			}
			msg := err.Error()
			if tt.namesPCRs {
				if !strings.Contains(msg, kmsenv.KeyARN) {
					t.Errorf("error does not name the key: %s", msg)
				}
				for n, v := range env.PCRs {
					if want := "PCR" + string(rune('0'+n)) + "=" + hex.EncodeToString(v); !strings.Contains(msg, want) {
						t.Errorf("error does not name %s…: %s", want[:12], msg)
					}
				}
			}
			t.Logf("%s", msg)
		})
	}
	// A refused Seal (first format) fails the same way.
	env.KMS.SetRequiredPCRs(map[int][]byte{2: kmsenv.PCR(0xee)})
	if key, _, err := env.Sealer(kmsenv.FastRetry()).Seal(ctx, vol); !errors.Is(err, kms.ErrRefused) || key != nil || !strings.Contains(err.Error(), "GenerateDataKey") {
		t.Fatalf("Seal with wrong PCRs = %x, %v", key, err)
	}
}

// TestCancel: a cancelled context stops the retries at once.
func TestCancel(t *testing.T) {
	env := kmsenv.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	s := env.UnreachableSealer(t, kms.Retry{Attempts: 1000, Base: 1 << 40})
	go func() {
		for env.Dials.Load() == 0 {
			time.Sleep(time.Millisecond) // until the first attempt
		}
		cancel()
	}()
	_, _, err := s.Seal(ctx, vol)
	if !errors.Is(err, context.Canceled) || !errors.Is(err, kms.ErrUnreachable) {
		t.Fatalf("Seal = %v, want context.Canceled and ErrUnreachable", err)
	}
}
