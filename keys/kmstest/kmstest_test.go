package kmstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"
	"github.com/enclave-storage/enclave-storage/cms"
	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/enclave-storage/enclave-storage/nsm/nsmtest"
)

const (
	testAKID   = "AKIDKMSTEST"
	testSecret = "kmstest-secret"
)

var (
	pcrs = map[int][]byte{
		0: bytes.Repeat([]byte{0xa0}, 48),
		1: bytes.Repeat([]byte{0xa1}, 48),
		2: bytes.Repeat([]byte{0xa2}, 48),
	}
	otherPCR2 = bytes.Repeat([]byte{0xff}, 48)
)

// enclaveKey is one RSA-2048 recipient key for the whole package: making
// one takes long enough that each test should not.
var enclaveKey = sync.OnceValues(func() (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, 2048) })

type env struct {
	srv    *Server
	ca     *nsmtest.CA
	client *kms.Client
	key    *rsa.PrivateKey
	ctx    context.Context
}

func newEnv(t *testing.T, opts Options, secret string) *env {
	t.Helper()
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	key, err := enclaveKey()
	if err != nil {
		t.Fatal(err)
	}
	opts.Roots = ca.Roots()
	opts.AccessKeys = map[string]string{testAKID: testSecret}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return &env{srv: srv, ca: ca, key: key, ctx: context.Background(), client: sdkClient(srv, secret)}
}

// sdkClient is the real aws-sdk-go-v2 KMS client, pointed at srv.
func sdkClient(srv *Server, secret string) *kms.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: srv.RootCAs()}}
	cfg := aws.Config{
		Region:      "us-east-1",
		Credentials: credentials.NewStaticCredentialsProvider(testAKID, secret, "session-token"),
		HTTPClient:  &http.Client{Transport: tr},
	}
	return kms.NewFromConfig(cfg, func(o *kms.Options) {
		o.BaseEndpoint = aws.String(srv.URL())
		o.RetryMaxAttempts = 2
	})
}

// recipient attests the enclave key with the given PCRs, signed by ca.
func (e *env) recipient(t *testing.T, ca *nsmtest.CA, pcrs map[int][]byte) *types.RecipientInfo {
	t.Helper()
	spki, err := x509.MarshalPKIXPublicKey(&e.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := (&nsmtest.Fake{CA: ca, PCRs: pcrs}).Attest(e.ctx, nsm.Request{PublicKey: spki, Nonce: []byte("nonce")})
	if err != nil {
		t.Fatal(err)
	}
	return &types.RecipientInfo{AttestationDocument: doc, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256}
}

var volumeContext = map[string]string{"luks-uuid": "4f1c0e0a-8d1b-4c39-9a3e-1a2b3c4d5e6f", "export": "run"}

func TestGenerateThenDecryptForRecipient(t *testing.T) {
	e := newEnv(t, Options{RequiredPCRs: pcrs}, testSecret)
	rcpt := e.recipient(t, e.ca, pcrs)
	gen, err := e.client.GenerateDataKey(e.ctx, &kms.GenerateDataKeyInput{
		KeyId: aws.String(e.srv.KeyARN()), KeySpec: types.DataKeySpecAes256,
		EncryptionContext: volumeContext, Recipient: rcpt,
	})
	if err != nil {
		t.Fatal(err)
	}
	if gen.Plaintext != nil {
		t.Errorf("Plaintext returned with a recipient: %x", gen.Plaintext)
	}
	if aws.ToString(gen.KeyId) != e.srv.KeyARN() {
		t.Errorf("KeyId = %q, want %q", aws.ToString(gen.KeyId), e.srv.KeyARN())
	}
	dataKey, err := cms.Decrypt(gen.CiphertextForRecipient, e.key)
	if err != nil {
		t.Fatalf("cms.Decrypt(CiphertextForRecipient): %v", err)
	}
	if len(dataKey) != 32 {
		t.Fatalf("data key of %d bytes, want 32", len(dataKey))
	}

	// Later unlocks: Decrypt with a fresh document, by ARN, by key ID and
	// without KeyId (KMS reads the key from the blob).
	for _, keyID := range []*string{aws.String(e.srv.KeyARN()), aws.String("1234abcd-12ab-34cd-56ef-1234567890ab"), nil} {
		dec, err := e.client.Decrypt(e.ctx, &kms.DecryptInput{
			CiphertextBlob: gen.CiphertextBlob, KeyId: keyID,
			EncryptionContext: volumeContext, Recipient: e.recipient(t, e.ca, pcrs),
		})
		if err != nil {
			t.Fatalf("Decrypt (KeyId %v): %v", aws.ToString(keyID), err)
		}
		if dec.Plaintext != nil {
			t.Errorf("Decrypt returned Plaintext with a recipient")
		}
		got, err := cms.Decrypt(dec.CiphertextForRecipient, e.key)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, dataKey) {
			t.Fatalf("Decrypt released %x, GenerateDataKey %x", got, dataKey)
		}
	}
}

func TestWithoutPolicyPlaintext(t *testing.T) {
	e := newEnv(t, Options{}, testSecret)
	gen, err := e.client.GenerateDataKey(e.ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(e.srv.KeyARN()), NumberOfBytes: aws.Int32(64)})
	if err != nil {
		t.Fatal(err)
	}
	if len(gen.Plaintext) != 64 || gen.CiphertextForRecipient != nil {
		t.Fatalf("Plaintext %d bytes, CiphertextForRecipient %d bytes; want 64 and none", len(gen.Plaintext), len(gen.CiphertextForRecipient))
	}
	dec, err := e.client.Decrypt(e.ctx, &kms.DecryptInput{CiphertextBlob: gen.CiphertextBlob})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dec.Plaintext, gen.Plaintext) || dec.EncryptionAlgorithm != types.EncryptionAlgorithmSpecSymmetricDefault {
		t.Fatalf("Decrypt = %x (%s), want %x", dec.Plaintext, dec.EncryptionAlgorithm, gen.Plaintext)
	}
}

// errorCode is the AWS error code of err, "" if it has none.
func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func TestRefusals(t *testing.T) {
	e := newEnv(t, Options{RequiredPCRs: pcrs}, testSecret)
	good := e.recipient(t, e.ca, pcrs)
	gen, err := e.client.GenerateDataKey(e.ctx, &kms.GenerateDataKeyInput{
		KeyId: aws.String(e.srv.KeyARN()), KeySpec: types.DataKeySpecAes256, EncryptionContext: volumeContext, Recipient: good,
	})
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	changed := map[int][]byte{0: pcrs[0], 1: pcrs[1], 2: otherPCR2}
	badSig := *e.recipient(t, e.ca, pcrs)
	badSig.AttestationDocument = bytes.Clone(badSig.AttestationDocument)
	badSig.AttestationDocument[len(badSig.AttestationDocument)-1] ^= 1 // last byte of the ES384 signature
	tampered := bytes.Clone(gen.CiphertextBlob)
	tampered[len(tampered)-1] ^= 1
	otherContext := map[string]string{"luks-uuid": volumeContext["luks-uuid"], "export": "other"}

	tests := []struct {
		name      string
		blob      []byte // nil: GenerateDataKey
		keyID     string
		context   map[string]string
		recipient *types.RecipientInfo
		want      any // a pointer to a typed error from types, or nil to compare codes only
		code      string
	}{
		{"PCR2 differs", nil, "", volumeContext, e.recipient(t, e.ca, changed), nil, "AccessDeniedException"},
		{"PCR2 differs on Decrypt", gen.CiphertextBlob, "", volumeContext, e.recipient(t, e.ca, changed), nil, "AccessDeniedException"},
		{"PCR1 missing", nil, "", volumeContext, e.recipient(t, e.ca, map[int][]byte{0: pcrs[0], 2: pcrs[2]}), nil, "AccessDeniedException"},
		{"no recipient", gen.CiphertextBlob, "", volumeContext, nil, nil, "AccessDeniedException"},
		{"bad document signature", nil, "", volumeContext, &badSig, nil, "ValidationException"},
		{"document from another CA", gen.CiphertextBlob, "", volumeContext, e.recipient(t, otherCA, pcrs), nil, "ValidationException"},
		{"wrong context", gen.CiphertextBlob, "", otherContext, good, new(*types.InvalidCiphertextException), "InvalidCiphertextException"},
		{"no context", gen.CiphertextBlob, "", nil, good, new(*types.InvalidCiphertextException), "InvalidCiphertextException"},
		{"tampered blob", tampered, "", volumeContext, good, new(*types.InvalidCiphertextException), "InvalidCiphertextException"},
		{"truncated blob", gen.CiphertextBlob[:20], "", volumeContext, good, new(*types.InvalidCiphertextException), "InvalidCiphertextException"},
		{"unknown key", nil, "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000", volumeContext, good, new(*types.NotFoundException), "NotFoundException"},
		{"Decrypt names another key", gen.CiphertextBlob, "arn:aws:kms:us-east-1:111122223333:key/00000000-0000-0000-0000-000000000000", volumeContext, good, new(*types.IncorrectKeyException), "IncorrectKeyException"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyID := tt.keyID
			if keyID == "" && tt.blob == nil {
				keyID = e.srv.KeyARN()
			}
			var err error
			if tt.blob == nil {
				var out *kms.GenerateDataKeyOutput
				out, err = e.client.GenerateDataKey(e.ctx, &kms.GenerateDataKeyInput{
					KeyId: aws.String(keyID), KeySpec: types.DataKeySpecAes256, EncryptionContext: tt.context, Recipient: tt.recipient,
				})
				if err == nil {
					t.Fatalf("GenerateDataKey succeeded: %d bytes for the recipient", len(out.CiphertextForRecipient))
				}
			} else {
				in := &kms.DecryptInput{CiphertextBlob: tt.blob, EncryptionContext: tt.context, Recipient: tt.recipient}
				if keyID != "" {
					in.KeyId = aws.String(keyID)
				}
				var out *kms.DecryptOutput
				out, err = e.client.Decrypt(e.ctx, in)
				if err == nil {
					t.Fatalf("Decrypt succeeded: %d bytes for the recipient", len(out.CiphertextForRecipient))
				}
			}
			if got := errorCode(err); got != tt.code {
				t.Fatalf("error code %q (%v), want %q", got, err, tt.code)
			}
			if tt.want != nil && !errors.As(err, tt.want) {
				t.Fatalf("error %T (%v) is not %T", err, err, tt.want)
			}
		})
	}
}

func TestSetRequiredPCRs(t *testing.T) {
	e := newEnv(t, Options{RequiredPCRs: pcrs}, testSecret)
	changed := map[int][]byte{0: pcrs[0], 1: pcrs[1], 2: otherPCR2}
	in := &kms.GenerateDataKeyInput{KeyId: aws.String(e.srv.KeyARN()), KeySpec: types.DataKeySpecAes256, Recipient: e.recipient(t, e.ca, changed)}
	if _, err := e.client.GenerateDataKey(e.ctx, in); errorCode(err) != "AccessDeniedException" {
		t.Fatalf("before the policy change: %v, want AccessDeniedException", err)
	}
	e.srv.SetRequiredPCRs(map[int][]byte{2: otherPCR2})
	if _, err := e.client.GenerateDataKey(e.ctx, in); err != nil {
		t.Fatalf("after the policy change: %v", err)
	}
}

func TestExpiredDocument(t *testing.T) {
	e := newEnv(t, Options{Now: func() time.Time { return time.Now().Add(10 * 365 * 24 * time.Hour) }}, testSecret)
	_, err := e.client.GenerateDataKey(e.ctx, &kms.GenerateDataKeyInput{
		KeyId: aws.String(e.srv.KeyARN()), KeySpec: types.DataKeySpecAes256, Recipient: e.recipient(t, e.ca, pcrs),
	})
	if errorCode(err) != "ValidationException" {
		t.Fatalf("document verified 10 years later: %v, want ValidationException", err)
	}
}

func TestSigV4(t *testing.T) {
	e := newEnv(t, Options{}, "wrong-secret")
	_, err := e.client.GenerateDataKey(e.ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(e.srv.KeyARN()), KeySpec: types.DataKeySpecAes256})
	if errorCode(err) != "InvalidSignatureException" {
		t.Fatalf("wrong secret: %v, want InvalidSignatureException", err)
	}
	// Unsigned requests are refused before anything else.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL(), strings.NewReader(`{"KeyId":"x","KeySpec":"AES_256"}`))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "TrentService.GenerateDataKey")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.srv.RootCAs()}}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	if resp.StatusCode != 400 || !strings.Contains(body.String(), `"__type":"MissingAuthenticationTokenException"`) {
		t.Fatalf("unsigned: %d %s", resp.StatusCode, body.String())
	}
}

func TestSetFailures(t *testing.T) {
	e := newEnv(t, Options{}, testSecret)
	in := &kms.GenerateDataKeyInput{KeyId: aws.String(e.srv.KeyARN()), KeySpec: types.DataKeySpecAes256}
	e.srv.SetFailures(1) // the SDK retries once (RetryMaxAttempts 2)
	if _, err := e.client.GenerateDataKey(e.ctx, in); err != nil {
		t.Fatalf("one failure, retried: %v", err)
	}
	e.srv.SetFailures(2)
	var ie *types.KMSInternalException
	if _, err := e.client.GenerateDataKey(e.ctx, in); !errors.As(err, &ie) {
		t.Fatalf("two failures: %v, want KMSInternalException", err)
	}
}

func TestServeOtherListener(t *testing.T) {
	// As in the VM: the server reached through another listener, by the
	// name KMS has, with TLS ending at the client.
	e := newEnv(t, Options{Region: "eu-west-1"}, testSecret)
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "kms.sock"))
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.Serve(l) // returns when the cleanup closes the server
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.srv.RootCAs(), ServerName: e.srv.Host()},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", l.Addr().String())
		},
	}
	cfg := aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider(testAKID, testSecret, ""), HTTPClient: &http.Client{Transport: tr}}
	c := kms.NewFromConfig(cfg) // the real endpoint name; the dialler goes to the unix socket
	out, err := c.GenerateDataKey(e.ctx, &kms.GenerateDataKeyInput{KeyId: aws.String(e.srv.KeyARN()), KeySpec: types.DataKeySpecAes128})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Plaintext) != 16 || !strings.HasPrefix(e.srv.KeyARN(), "arn:aws:kms:eu-west-1:") {
		t.Fatalf("Plaintext %d bytes from key %s", len(out.Plaintext), e.srv.KeyARN())
	}
}

// TestOpenSSLDecryptsCiphertextForRecipient: what the fake KMS answers a
// recipient opens with OpenSSL, an implementation not ours.
func TestOpenSSLDecryptsCiphertextForRecipient(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	e := newEnv(t, Options{RequiredPCRs: pcrs}, testSecret)
	gen, err := e.client.GenerateDataKey(e.ctx, &kms.GenerateDataKeyInput{
		KeyId: aws.String(e.srv.KeyARN()), NumberOfBytes: aws.Int32(48), EncryptionContext: volumeContext, Recipient: e.recipient(t, e.ca, pcrs),
	})
	if err != nil {
		t.Fatal(err)
	}
	want, err := cms.Decrypt(gen.CiphertextForRecipient, e.key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	der, _ := x509.MarshalPKCS8PrivateKey(e.key)
	keyPath, inPath := filepath.Join(dir, "key.pem"), filepath.Join(dir, "ct.ber")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inPath, gen.CiphertextForRecipient, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(openssl, "cms", "-decrypt", "-binary", "-inform", "DER", "-in", inPath, "-inkey", keyPath).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("openssl cms -decrypt: %v: %s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	if len(out) != 48 || !bytes.Equal(out, want) {
		t.Fatalf("openssl decrypted %x, cms.Decrypt %x", out, want)
	}
}
