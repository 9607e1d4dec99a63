package kms

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/enclave-storage/enclave-storage/cms"
	"github.com/enclave-storage/enclave-storage/keys"
	"github.com/enclave-storage/enclave-storage/nsm"
)

// TokenType is the LUKS2 token type the sealed data key is stored under.
const TokenType = "enclave-storage-kms"

// KeySize is the data key's length: KMS's AES_256 data key, used as the
// LUKS2 passphrase of keyslot 0.
const KeySize = 32

// Encryption context keys binding a blob to its volume.
const (
	ContextUUID   = "enclave-storage:luks-uuid"
	ContextExport = "enclave-storage:export"
)

// Errors callers may branch on with errors.Is; both come wrapped in an
// *Error naming the key and the PCRs sent.
var (
	// ErrRefused: KMS answered and refused (access denied by the key
	// policy, an undecryptable or foreign blob, a disabled key).
	ErrRefused = errors.New("KMS refused to release the key")
	// ErrUnreachable: KMS could not be reached within the retries.
	ErrUnreachable = errors.New("KMS unreachable")
	// ErrToken: the header's token is not one this Sealer wrote for this
	// volume (malformed, another key, another volume).
	ErrToken = errors.New("bad " + TokenType + " token")
)

// API is the part of the KMS client the Sealer uses; *awskms.Client
// implements it.
type API interface {
	GenerateDataKey(ctx context.Context, in *awskms.GenerateDataKeyInput, opts ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error)
	Decrypt(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error)
}

// Retry bounds the attempts on errors that may pass (no connection,
// throttling, KMS internal errors). Refusals are never retried.
type Retry struct {
	// Attempts is the number of calls, at least 1; zero means 6.
	Attempts int
	// Base is the first pause, doubled after every failure up to Max;
	// zero means 500 ms and 8 s.
	Base, Max time.Duration
}

func (r Retry) defaults() Retry {
	if r.Attempts <= 0 {
		r.Attempts = 6
	}
	if r.Base <= 0 {
		r.Base = 500 * time.Millisecond
	}
	if r.Max <= 0 {
		r.Max = 8 * time.Second
	}
	return r
}

// Sealer is a keys.Sealer backed by AWS KMS and the Nitro Secure Module.
type Sealer struct {
	// KeyARN is the KMS key (from the measured configuration: a token
	// naming another key is refused).
	KeyARN string
	// KMS makes the calls; see NewClient.
	KMS API
	// NSM attests the per-unlock RSA key.
	NSM nsm.Attester
	// Retry bounds retries when KMS is unreachable.
	Retry Retry
	// Rand is the randomness for the RSA key and nonce; nil means
	// crypto/rand.
	Rand io.Reader
}

var _ keys.Sealer = (*Sealer)(nil)

// Key implements keys.Provider so a Sealer can travel where a Provider
// does; it returns keys.ErrSealedKey.
func (s *Sealer) Key(ctx context.Context, volume string) ([]byte, error) {
	return nil, fmt.Errorf("kms key %s for %q: %w", s.KeyARN, volume, keys.ErrSealedKey)
}

// TokenType implements keys.Sealer.
func (s *Sealer) TokenType() string { return TokenType }

// token is the JSON of a TokenType token besides type and keyslots.
type token struct {
	KeyARN     string            `json:"key_arn"`
	Ciphertext []byte            `json:"ciphertext"` // KMS CiphertextBlob, base64 in JSON
	Context    map[string]string `json:"context"`
}

// maxCiphertext bounds the blob read from the (untrusted) header: KMS's
// CiphertextBlob is at most 6144 bytes.
const maxCiphertext = 6144

// EncryptionContext is the context binding a blob to b.
func EncryptionContext(b keys.Binding) map[string]string {
	return map[string]string{ContextUUID: b.UUID, ContextExport: b.Export}
}

// Seal implements keys.Sealer: a fresh data key from GenerateDataKey,
// released to this enclave's attested RSA key, and the token holding its
// ciphertext blob.
func (s *Sealer) Seal(ctx context.Context, b keys.Binding) ([]byte, keys.Sealed, error) {
	if b.UUID == "" || b.Export == "" {
		return nil, keys.Sealed{}, fmt.Errorf("kms: seal: binding needs a UUID and an export (%+v)", b)
	}
	ec := EncryptionContext(b)
	var blob []byte
	key, err := s.release(ctx, "GenerateDataKey", func(ctx context.Context, r *types.RecipientInfo) ([]byte, error) {
		out, err := s.KMS.GenerateDataKey(ctx, &awskms.GenerateDataKeyInput{
			KeyId:             aws.String(s.KeyARN),
			KeySpec:           types.DataKeySpecAes256,
			EncryptionContext: ec,
			Recipient:         r,
		})
		if err != nil {
			return nil, err
		}
		clear(out.Plaintext)
		blob = out.CiphertextBlob
		if len(blob) == 0 || len(blob) > maxCiphertext {
			return nil, fmt.Errorf("kms: GenerateDataKey returned a ciphertext blob of %d bytes", len(blob))
		}
		return out.CiphertextForRecipient, nil
	})
	if err != nil {
		return nil, keys.Sealed{}, err
	}
	f, err := json.Marshal(token{KeyARN: s.KeyARN, Ciphertext: blob, Context: ec})
	if err != nil {
		clear(key)
		return nil, keys.Sealed{}, err
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(f, &fields); err != nil {
		clear(key)
		return nil, keys.Sealed{}, err
	}
	return key, keys.Sealed{Type: TokenType, Fields: fields}, nil
}

// Unseal implements keys.Sealer: Decrypt of the token's blob, released to
// this enclave's attested RSA key. The token must name s.KeyARN and carry
// b's encryption context.
func (s *Sealer) Unseal(ctx context.Context, b keys.Binding, sealed keys.Sealed) ([]byte, error) {
	t, err := parseToken(sealed)
	if err != nil {
		return nil, err
	}
	ec := EncryptionContext(b)
	if t.KeyARN != s.KeyARN {
		return nil, fmt.Errorf("%w: it names key %s, the configuration %s", ErrToken, t.KeyARN, s.KeyARN)
	}
	if !maps.Equal(t.Context, ec) {
		return nil, fmt.Errorf("%w: its encryption context %v is not this volume's %v", ErrToken, t.Context, ec)
	}
	return s.release(ctx, "Decrypt", func(ctx context.Context, r *types.RecipientInfo) ([]byte, error) {
		out, err := s.KMS.Decrypt(ctx, &awskms.DecryptInput{
			CiphertextBlob:    t.Ciphertext,
			KeyId:             aws.String(s.KeyARN),
			EncryptionContext: ec,
			Recipient:         r,
		})
		if err != nil {
			return nil, err
		}
		clear(out.Plaintext)
		return out.CiphertextForRecipient, nil
	})
}

// parseToken decodes and bounds a token's fields.
func parseToken(s keys.Sealed) (token, error) {
	var t token
	if s.Type != TokenType {
		return t, fmt.Errorf("%w: type %q", ErrToken, s.Type)
	}
	for name, f := range s.Fields {
		var dst any
		switch name {
		case "key_arn":
			dst = &t.KeyARN
		case "ciphertext":
			if len(f) > 2*maxCiphertext {
				return t, fmt.Errorf("%w: ciphertext of %d bytes", ErrToken, len(f))
			}
			dst = &t.Ciphertext
		case "context":
			if len(f) > 4096 {
				return t, fmt.Errorf("%w: context of %d bytes", ErrToken, len(f))
			}
			dst = &t.Context
		default:
			continue // fields a later version may add
		}
		if err := json.Unmarshal(f, dst); err != nil {
			return t, fmt.Errorf("%w: field %s: %v", ErrToken, name, err)
		}
	}
	if t.KeyARN == "" || len(t.Ciphertext) == 0 || len(t.Ciphertext) > maxCiphertext || t.Context == nil {
		return t, fmt.Errorf("%w: key_arn, ciphertext (1..%d bytes) and context are required", ErrToken, maxCiphertext)
	}
	return t, nil
}

// release runs call (GenerateDataKey or Decrypt) with a recipient made of
// a fresh RSA-2048 key attested by the NSM, retrying while KMS is
// unreachable, and decrypts the CiphertextForRecipient it returns.
func (s *Sealer) release(ctx context.Context, op string, call func(context.Context, *types.RecipientInfo) ([]byte, error)) (key []byte, err error) {
	rnd := s.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	priv, err := rsa.GenerateKey(rnd, 2048)
	if err != nil {
		return nil, fmt.Errorf("kms: recipient key: %w", err)
	}
	defer zeroKey(priv)
	spki, err := x509.MarshalPKIXPublicKey(&priv.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("kms: recipient key: %w", err)
	}
	nonce := make([]byte, 32)
	if _, err := io.ReadFull(rnd, nonce); err != nil {
		return nil, fmt.Errorf("kms: nonce: %w", err)
	}
	doc, err := s.NSM.Attest(ctx, nsm.Request{Nonce: nonce, PublicKey: spki})
	if err != nil {
		return nil, fmt.Errorf("kms: attestation for %s: %w", s.KeyARN, err)
	}
	r := &types.RecipientInfo{AttestationDocument: doc, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}
	fail := func(kind, cause error) error {
		return &Error{Op: op, KeyARN: s.KeyARN, PCRs: sentPCRs(doc), Kind: kind, Err: cause}
	}

	rt := s.Retry.defaults()
	pause := rt.Base
	var env []byte
	for attempt := 1; ; attempt++ {
		env, err = call(ctx, r)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, fail(ErrUnreachable, fmt.Errorf("%w (after %d attempts: %w)", ctx.Err(), attempt, err))
		}
		kind, retry := classify(err)
		if !retry {
			return nil, fail(kind, err)
		}
		if attempt >= rt.Attempts {
			return nil, fail(ErrUnreachable, fmt.Errorf("%d attempts: %w", attempt, err))
		}
		select {
		case <-ctx.Done():
			return nil, fail(ErrUnreachable, fmt.Errorf("%w (after %d attempts: %w)", ctx.Err(), attempt, err))
		case <-time.After(pause):
		}
		pause = min(2*pause, rt.Max)
	}
	if len(env) == 0 {
		return nil, fail(ErrRefused, errors.New("no CiphertextForRecipient in the answer (the recipient was ignored)"))
	}
	key, err = cms.Decrypt(env, priv)
	if err != nil {
		return nil, fail(ErrRefused, fmt.Errorf("decrypting CiphertextForRecipient: %w", err))
	}
	if len(key) != KeySize {
		clear(key)
		return nil, fail(ErrRefused, fmt.Errorf("data key of %d bytes, want %d", len(key), KeySize))
	}
	return key, nil
}

// classify says what a failed call means. An answer from KMS is a
// refusal, never retried, unless KMS says to try again (throttling,
// internal errors). No answer at all (connection refused or reset,
// timeouts, a truncated reply) is retried, except a TLS certificate that
// does not verify: retrying cannot change it.
func classify(err error) (kind error, retry bool) {
	var api smithy.APIError
	if errors.As(err, &api) {
		switch api.ErrorCode() {
		case "ThrottlingException", "KMSInternalException", "DependencyTimeoutException", "LimitExceededException", "ServiceUnavailable", "InternalFailure":
			return ErrUnreachable, true
		}
		return ErrRefused, false
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return ErrUnreachable, false
	}
	return ErrUnreachable, true
}

// Error is a failure to get the key from KMS, naming the key and the PCRs
// of the attestation document sent, which the key policy compares.
type Error struct {
	Op     string         // "GenerateDataKey" or "Decrypt"
	KeyARN string         // the key
	PCRs   map[int][]byte // the PCRs in the attestation document sent
	Kind   error          // ErrRefused or ErrUnreachable
	Err    error          // the cause
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kms: %s with key %s: %v for this enclave's attestation (", e.Op, e.KeyARN, e.Kind)
	for i, n := range slices.Sorted(maps.Keys(e.PCRs)) {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "PCR%d=%s", n, hex.EncodeToString(e.PCRs[n]))
	}
	fmt.Fprintf(&b, "): %v", e.Err)
	return b.String()
}

// Unwrap returns the kind and the cause.
func (e *Error) Unwrap() []error { return []error{e.Kind, e.Err} }

// policyPCRs are the PCRs a key policy is written against: the image
// (0), kernel and boot ramdisk (1), application (2), signing certificate
// (8).
var policyPCRs = []int{0, 1, 2, 8}

// sentPCRs returns the policy PCRs of our own attestation document, for
// error messages; nil when it does not parse.
func sentPCRs(doc []byte) map[int][]byte {
	d, err := nsm.Parse(doc)
	if err != nil {
		return nil
	}
	m := map[int][]byte{}
	for _, n := range policyPCRs {
		v, ok := d.PCRs[n]
		if !ok || n == 8 && allZero(v) { // PCR8 is zero for unsigned images
			continue
		}
		m[n] = v
	}
	return m
}

func allZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

// zeroKey overwrites the private key's secret numbers it can reach: D,
// the primes and the CRT values in Precomputed. It is best effort, not a
// guarantee: since Go 1.24 crypto/rsa keeps its own copy of the key
// (Precomputed's unexported FIPS key, built by Precompute/Validate and by
// GenerateKey) that no exported API can clear, and big.Int arithmetic
// leaves intermediate copies. Those live until the memory is reused; the key is
// ephemeral (one per KMS call) and never leaves the enclave's memory.
func zeroKey(k *rsa.PrivateKey) {
	for _, n := range append([]*big.Int{k.D, k.Precomputed.Dp, k.Precomputed.Dq, k.Precomputed.Qinv}, k.Primes...) {
		if n != nil {
			clear(n.Bits())
			n.SetInt64(0)
		}
	}
}
