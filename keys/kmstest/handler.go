package kmstest

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/enclave-storage/enclave-storage/cms"
	"github.com/enclave-storage/enclave-storage/nsm"
)

const (
	maxBody       = 64 << 10 // KMS's requests are small; attestation documents ~5 KiB
	maxBlob       = 6144     // KMS's CiphertextBlob length limit
	maxContextLen = 8192     // KMS's encryption context limit, keys and values
	blobVersion   = 1
)

// apiError is an AWS JSON 1.1 error answer.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status, code, fmt.Sprintf(format, args...)}
}

func validation(format string, args ...any) *apiError {
	return errorf(http.StatusBadRequest, "ValidationException", format, args...)
}

var errCiphertext = errorf(http.StatusBadRequest, "InvalidCiphertextException", "")

// recipientInfo is KMS's RecipientInfo.
type recipientInfo struct {
	AttestationDocument    []byte
	KeyEncryptionAlgorithm string
}

type generateDataKeyRequest struct {
	KeyId             string
	KeySpec           string
	NumberOfBytes     *int
	EncryptionContext map[string]string
	GrantTokens       []string
	Recipient         *recipientInfo
	DryRun            bool
}

type decryptRequest struct {
	CiphertextBlob      []byte
	KeyId               string
	EncryptionContext   map[string]string
	EncryptionAlgorithm string
	GrantTokens         []string
	Recipient           *recipientInfo
	DryRun              bool
}

// response is the union of both operations' answers; empty fields are left
// out, as KMS leaves out Plaintext when it answers a recipient.
type response struct {
	CiphertextBlob         []byte `json:",omitempty"`
	CiphertextForRecipient []byte `json:",omitempty"`
	Plaintext              []byte `json:",omitempty"`
	KeyId                  string
	EncryptionAlgorithm    string `json:",omitempty"`
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	resp, err := s.dispatch(r, target)
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", requestID())
	var body []byte
	if err != nil {
		var ae *apiError
		if !errors.As(err, &ae) {
			ae = errorf(http.StatusInternalServerError, "KMSInternalException", "%v", err)
		}
		s.log.Info("kms request refused", "target", target, "code", ae.code, "message", ae.message)
		body, _ = json.Marshal(map[string]string{"__type": ae.code, "message": ae.message})
		w.WriteHeader(ae.status)
	} else {
		s.log.Info("kms request", "target", target, "recipient", resp.CiphertextForRecipient != nil)
		body, _ = json.Marshal(resp)
	}
	w.Write(body)
}

func requestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (s *Server) dispatch(r *http.Request, target string) (*response, error) {
	if r.Method != http.MethodPost {
		return nil, errorf(http.StatusMethodNotAllowed, "UnknownOperationException", "method %s", r.Method)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		return nil, errorf(http.StatusBadRequest, "SerializationException", "Content-Type %q, want application/x-amz-json-1.1", ct)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "SerializationException", "reading the body: %v", err)
	}
	if len(body) > maxBody {
		return nil, errorf(http.StatusRequestEntityTooLarge, "SerializationException", "request longer than %d bytes", maxBody)
	}
	if err := s.checkSigV4(r, body); err != nil {
		return nil, err
	}
	s.mu.Lock()
	fail := s.failures > 0
	if fail {
		s.failures--
	}
	s.mu.Unlock()
	if fail {
		return nil, errorf(http.StatusInternalServerError, "KMSInternalException", "injected failure")
	}
	switch target {
	case "TrentService.GenerateDataKey":
		var req generateDataKeyRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return s.generateDataKey(&req)
	case "TrentService.Decrypt":
		var req decryptRequest
		if err := decode(body, &req); err != nil {
			return nil, err
		}
		return s.decrypt(&req)
	}
	return nil, errorf(http.StatusBadRequest, "UnknownOperationException", "operation %q is not served by kmstest", target)
}

func decode(body []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "SerializationException", "%v", err)
	}
	return nil
}

func (s *Server) generateDataKey(req *generateDataKeyRequest) (*response, error) {
	if err := s.checkKey(req.KeyId); err != nil {
		return nil, err
	}
	n := 0
	switch {
	case req.KeySpec != "" && req.NumberOfBytes != nil:
		return nil, validation("specify either KeySpec or NumberOfBytes, not both")
	case req.KeySpec == "AES_256":
		n = 32
	case req.KeySpec == "AES_128":
		n = 16
	case req.KeySpec != "":
		return nil, validation("KeySpec %q is not AES_256 or AES_128", req.KeySpec)
	case req.NumberOfBytes != nil && *req.NumberOfBytes >= 1 && *req.NumberOfBytes <= 1024:
		n = *req.NumberOfBytes
	default:
		return nil, validation("specify KeySpec or NumberOfBytes (1 to 1024)")
	}
	if err := checkContext(req.EncryptionContext); err != nil {
		return nil, err
	}
	pub, err := s.authorize("kms:GenerateDataKey", req.Recipient)
	if err != nil {
		return nil, err
	}
	if req.DryRun {
		return nil, errorf(http.StatusPreconditionFailed, "DryRunOperationException", "The request would have succeeded.")
	}
	plaintext := make([]byte, n)
	rand.Read(plaintext)
	resp := &response{CiphertextBlob: s.seal(plaintext, req.EncryptionContext), KeyId: s.opts.KeyARN}
	return resp, s.answer(resp, plaintext, pub)
}

func (s *Server) decrypt(req *decryptRequest) (*response, error) {
	if req.EncryptionAlgorithm != "" && req.EncryptionAlgorithm != "SYMMETRIC_DEFAULT" {
		return nil, errorf(http.StatusBadRequest, "IncorrectKeyException", "EncryptionAlgorithm %q is not the key's SYMMETRIC_DEFAULT", req.EncryptionAlgorithm)
	}
	if len(req.CiphertextBlob) == 0 || len(req.CiphertextBlob) > maxBlob {
		return nil, validation("CiphertextBlob must be 1 to %d bytes", maxBlob)
	}
	if err := checkContext(req.EncryptionContext); err != nil {
		return nil, err
	}
	arn, err := blobKey(req.CiphertextBlob)
	if err != nil {
		return nil, err
	}
	if arn != s.opts.KeyARN {
		return nil, errCiphertext
	}
	if req.KeyId != "" {
		if err := s.checkKey(req.KeyId); err != nil {
			return nil, errorf(http.StatusBadRequest, "IncorrectKeyException", "The key ID in the request does not identify a KMS key that can perform this operation.")
		}
	}
	pub, err := s.authorize("kms:Decrypt", req.Recipient)
	if err != nil {
		return nil, err
	}
	plaintext, err := s.open(req.CiphertextBlob, req.EncryptionContext)
	if err != nil {
		return nil, err
	}
	if req.DryRun {
		return nil, errorf(http.StatusPreconditionFailed, "DryRunOperationException", "The request would have succeeded.")
	}
	resp := &response{KeyId: s.opts.KeyARN, EncryptionAlgorithm: "SYMMETRIC_DEFAULT"}
	return resp, s.answer(resp, plaintext, pub)
}

// answer puts plaintext into resp: enveloped for the recipient's key when
// there is one, in the clear otherwise.
func (s *Server) answer(resp *response, plaintext []byte, pub *rsa.PublicKey) error {
	if pub == nil {
		resp.Plaintext = plaintext
		return nil
	}
	env, err := cms.Encrypt(rand.Reader, plaintext, pub)
	if err != nil {
		return err
	}
	resp.CiphertextForRecipient = env
	return nil
}

// checkKey accepts the key's ARN or ID.
func (s *Server) checkKey(id string) error {
	switch id {
	case "":
		return validation("KeyId is required")
	case s.opts.KeyARN, s.keyID:
		return nil
	}
	return errorf(http.StatusNotFound, "NotFoundException", "Key '%s' does not exist", id)
}

func checkContext(ec map[string]string) error {
	n := 0
	for k, v := range ec {
		if k == "" || v == "" {
			return validation("encryption context keys and values must not be empty")
		}
		n += len(k) + len(v)
	}
	if n > maxContextLen {
		return validation("encryption context longer than %d bytes", maxContextLen)
	}
	return nil
}

// authorize applies the key policy to a request for action: it verifies
// the recipient's attestation document, if any, and checks the required
// PCRs. It returns the recipient's key, nil without a recipient.
func (s *Server) authorize(action string, rcpt *recipientInfo) (*rsa.PublicKey, error) {
	s.mu.Lock()
	required := s.pcrs
	s.mu.Unlock()
	denied := errorf(http.StatusBadRequest, "AccessDeniedException",
		"User: arn:aws:sts::111122223333:assumed-role/kmstest/i-0123456789abcdef0 is not authorized to perform: %s on resource: %s because no resource-based policy allows the %s action",
		action, s.opts.KeyARN, action)
	if rcpt == nil {
		if len(required) > 0 {
			return nil, denied // kms:RecipientAttestation:PCRn absent: condition false
		}
		return nil, nil
	}
	if rcpt.KeyEncryptionAlgorithm != "RSAES_OAEP_SHA_256" {
		return nil, validation("Recipient.KeyEncryptionAlgorithm %q is not RSAES_OAEP_SHA_256", rcpt.KeyEncryptionAlgorithm)
	}
	doc, err := nsm.Verify(rcpt.AttestationDocument, s.opts.Roots, s.opts.Now())
	if err != nil {
		return nil, validation("Recipient.AttestationDocument is not valid: %v", err)
	}
	pub, err := publicKey(doc.PublicKey)
	if err != nil {
		return nil, validation("%v", err)
	}
	for _, i := range sortedKeys(required) {
		if got, ok := doc.PCRs[i]; !ok || subtle.ConstantTimeCompare(got, required[i]) != 1 {
			return nil, denied
		}
	}
	return pub, nil
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// The ciphertext blob:
//
//	version (1) | ARN length (2, big endian) | ARN | nonce (12) | AES-256-GCM sealed data key
//
// sealed with additional data = version | ARN length | ARN | canonical
// encryption context (sorted keys, each key and value length-prefixed).
func (s *Server) seal(plaintext []byte, ec map[string]string) []byte {
	hdr := []byte{blobVersion}
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(s.opts.KeyARN)))
	hdr = append(hdr, s.opts.KeyARN...)
	nonce := make([]byte, s.master.NonceSize())
	rand.Read(nonce)
	out := append(append([]byte(nil), hdr...), nonce...)
	return s.master.Seal(out, nonce, plaintext, additionalData(hdr, ec))
}

// blobKey reads the key ARN a blob names.
func blobKey(blob []byte) (string, error) {
	if len(blob) < 3 || blob[0] != blobVersion {
		return "", errCiphertext
	}
	n := int(binary.BigEndian.Uint16(blob[1:3]))
	if len(blob) < 3+n {
		return "", errCiphertext
	}
	return string(blob[3 : 3+n]), nil
}

func (s *Server) open(blob []byte, ec map[string]string) ([]byte, error) {
	n := 3 + len(s.opts.KeyARN)
	ns := s.master.NonceSize()
	if len(blob) < n+ns+s.master.Overhead() {
		return nil, errCiphertext
	}
	pt, err := s.master.Open(nil, blob[n:n+ns], blob[n+ns:], additionalData(blob[:n], ec))
	if err != nil {
		return nil, errCiphertext
	}
	return pt, nil
}

func additionalData(hdr []byte, ec map[string]string) []byte {
	keys := make([]string, 0, len(ec))
	for k := range ec {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	ad := append([]byte(nil), hdr...)
	for _, k := range keys {
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(k)))
		ad = append(ad, k...)
		ad = binary.BigEndian.AppendUint32(ad, uint32(len(ec[k])))
		ad = append(ad, ec[k]...)
	}
	return ad
}
