package cms

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
)

// Sentinel errors; every error Decrypt returns wraps one of them.
var (
	// ErrMalformed: the input is not well-formed BER or not EnvelopedData.
	ErrMalformed = errors.New("cms: malformed EnvelopedData")
	// ErrUnsupported: well-formed, but a version, algorithm, parameter or
	// optional field other than the ones KMS uses.
	ErrUnsupported = errors.New("cms: unsupported EnvelopedData")
	// ErrRecipient: the recipient's subjectKeyIdentifier is not the SHA-256
	// of our public key, so the envelope was made for another key.
	ErrRecipient = errors.New("cms: envelope is for another recipient")
	// ErrDecrypt: the content-encryption key or the content did not decrypt
	// (RSA-OAEP, key length or padding); deliberately one error for all.
	ErrDecrypt = errors.New("cms: decryption failed")
)

// Object identifiers of the one shape KMS produces.
var (
	oidData          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 1}
	oidEnvelopedData = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 3}
	oidRSAESOAEP     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 7}
	oidMGF1          = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 8}
	oidSHA256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidAES256CBC     = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 1, 42}
)

const (
	keySize = 32 // AES-256
	ivSize  = aes.BlockSize
)

// SubjectKeyID returns the recipient identifier KMS uses for pub: the SHA-256
// of its SubjectPublicKeyInfo DER.
func SubjectKeyID(pub *rsa.PublicKey) ([]byte, error) {
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("cms: marshal public key: %w", err)
	}
	h := sha256.Sum256(spki)
	return h[:], nil
}

// envelope is the parsed EnvelopedData, before any decryption.
type envelope struct {
	ski          []byte
	encryptedKey []byte
	iv           []byte
	ciphertext   []byte
}

// Decrypt opens a CMS EnvelopedData as KMS returns in CiphertextForRecipient.
func Decrypt(ber []byte, key *rsa.PrivateKey) ([]byte, error) {
	if key == nil {
		return nil, errors.New("cms: nil private key")
	}
	env, err := parseEnvelope(ber)
	if err != nil {
		return nil, err
	}
	ski, err := SubjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(env.ski, ski) {
		return nil, fmt.Errorf("%w: subjectKeyIdentifier %x, ours %x", ErrRecipient, env.ski, ski)
	}
	cek, err := rsa.DecryptOAEP(sha256.New(), nil, key, env.encryptedKey, nil)
	defer clear(cek) // the content key protects the data key: do not leave it on the heap
	if err != nil || len(cek) != keySize {
		return nil, ErrDecrypt
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, ErrDecrypt
	}
	pt := make([]byte, len(env.ciphertext))
	cipher.NewCBCDecrypter(block, env.iv).CryptBlocks(pt, env.ciphertext)
	n, ok := unpad(pt)
	if !ok {
		return nil, ErrDecrypt
	}
	return pt[:n], nil
}

// unpad checks PKCS#7 padding (RFC 5652 6.3) in time independent of the
// padding's value and returns the plaintext length. pt is a non-empty
// multiple of the block size.
func unpad(pt []byte) (int, bool) {
	p := int(pt[len(pt)-1])
	good := subtle.ConstantTimeLessOrEq(1, p) & subtle.ConstantTimeLessOrEq(p, aes.BlockSize)
	for i := 1; i <= aes.BlockSize; i++ {
		inPad := subtle.ConstantTimeLessOrEq(i, p)
		same := subtle.ConstantTimeByteEq(pt[len(pt)-i], byte(p))
		// Where i is inside the padding, the byte must equal p.
		good &= subtle.ConstantTimeSelect(inPad, same, 1)
	}
	return len(pt) - p, good == 1
}

// parseEnvelope walks the BER tree of a ContentInfo holding EnvelopedData
// and accepts exactly the shape KMS produces.
func parseEnvelope(ber []byte) (*envelope, error) {
	root, err := parseBER(ber)
	if err != nil {
		return nil, err
	}
	// ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }
	ci, err := sequence(root, "ContentInfo", 2, 2)
	if err != nil {
		return nil, err
	}
	if err := expectOID(ci[0], oidEnvelopedData, "ContentInfo.contentType"); err != nil {
		return nil, err
	}
	if !ci[1].is(classContextSpecific, 0, true) || len(ci[1].children) != 1 {
		return nil, fmt.Errorf("%w: ContentInfo.content is %v", ErrMalformed, ci[1])
	}
	// EnvelopedData ::= SEQUENCE { version, originatorInfo [0] OPTIONAL,
	//   recipientInfos SET, encryptedContentInfo, unprotectedAttrs [1] OPTIONAL }
	ed, err := sequence(ci[1].children[0], "EnvelopedData", 3, 5)
	if err != nil {
		return nil, err
	}
	if len(ed) != 3 {
		return nil, fmt.Errorf("%w: EnvelopedData with originatorInfo or unprotectedAttrs", ErrUnsupported)
	}
	if err := expectInt(ed[0], 2, "EnvelopedData.version"); err != nil {
		return nil, err
	}
	if !ed[1].is(classUniversal, tagSet, true) {
		return nil, fmt.Errorf("%w: recipientInfos is %v", ErrMalformed, ed[1])
	}
	if len(ed[1].children) != 1 {
		return nil, fmt.Errorf("%w: %d recipients, want 1", ErrUnsupported, len(ed[1].children))
	}
	env := &envelope{}
	if err := parseRecipient(ed[1].children[0], env); err != nil {
		return nil, err
	}
	if err := parseContent(ed[2], env); err != nil {
		return nil, err
	}
	return env, nil
}

// parseRecipient reads a KeyTransRecipientInfo ::= SEQUENCE { version 2,
// rid [0] IMPLICIT SubjectKeyIdentifier, keyEncryptionAlgorithm, encryptedKey }.
func parseRecipient(e *element, env *envelope) error {
	if !e.is(classUniversal, tagSequence, true) {
		// [1] kari, [2] kekri, [3] pwri, [4] ori.
		return fmt.Errorf("%w: recipient is %v, not KeyTransRecipientInfo", ErrUnsupported, e)
	}
	ktri, err := sequence(e, "KeyTransRecipientInfo", 4, 4)
	if err != nil {
		return err
	}
	if err := expectInt(ktri[0], 2, "KeyTransRecipientInfo.version"); err != nil {
		return err
	}
	if !ktri[1].is(classContextSpecific, 0, false) {
		return fmt.Errorf("%w: recipient identifier %v, want subjectKeyIdentifier", ErrUnsupported, ktri[1])
	}
	env.ski = ktri[1].content
	if err := parseOAEP(ktri[2]); err != nil {
		return err
	}
	if !ktri[3].is(classUniversal, tagOctetString, ktri[3].constructed) {
		return fmt.Errorf("%w: encryptedKey is %v", ErrMalformed, ktri[3])
	}
	env.encryptedKey, err = octets(ktri[3])
	return err
}

// parseOAEP accepts RSAES-OAEP with SHA-256 and MGF1-SHA-256 and an empty
// label (RFC 8017 A.2.1, RFC 4055).
func parseOAEP(e *element) error {
	alg, err := sequence(e, "keyEncryptionAlgorithm", 1, 2)
	if err != nil {
		return err
	}
	if err := expectOID(alg[0], oidRSAESOAEP, "keyEncryptionAlgorithm"); err != nil {
		return err
	}
	if len(alg) != 2 {
		return fmt.Errorf("%w: RSAES-OAEP without parameters means SHA-1", ErrUnsupported)
	}
	params, err := sequence(alg[1], "RSAES-OAEP-params", 0, 3)
	if err != nil {
		return err
	}
	var sawHash, sawMGF bool
	for i, p := range params {
		if p.class != classContextSpecific || !p.constructed || p.tag > 2 || (i > 0 && p.tag <= params[i-1].tag) {
			return fmt.Errorf("%w: RSAES-OAEP-params field %v", ErrMalformed, p)
		}
		if len(p.children) != 1 {
			return fmt.Errorf("%w: RSAES-OAEP-params field %v", ErrMalformed, p)
		}
		switch p.tag {
		case 0: // hashFunc
			if err := expectSHA256(p.children[0], "OAEP hash"); err != nil {
				return err
			}
			sawHash = true
		case 1: // maskGenFunc
			mgf, err := sequence(p.children[0], "OAEP maskGenFunc", 2, 2)
			if err != nil {
				return err
			}
			if err := expectOID(mgf[0], oidMGF1, "OAEP maskGenFunc"); err != nil {
				return err
			}
			if err := expectSHA256(mgf[1], "MGF1 hash"); err != nil {
				return err
			}
			sawMGF = true
		case 2: // pSourceFunc: only the default, an empty label, is used.
			return fmt.Errorf("%w: RSAES-OAEP with a label source", ErrUnsupported)
		}
	}
	if !sawHash || !sawMGF {
		return fmt.Errorf("%w: RSAES-OAEP with default (SHA-1) hash or mask", ErrUnsupported)
	}
	return nil
}

// parseContent reads EncryptedContentInfo ::= SEQUENCE { contentType id-data,
// contentEncryptionAlgorithm aes256-CBC(IV), [0] IMPLICIT encryptedContent }.
func parseContent(e *element, env *envelope) error {
	eci, err := sequence(e, "EncryptedContentInfo", 3, 3)
	if err != nil {
		return err
	}
	if err := expectOID(eci[0], oidData, "EncryptedContentInfo.contentType"); err != nil {
		return err
	}
	alg, err := sequence(eci[1], "contentEncryptionAlgorithm", 2, 2)
	if err != nil {
		return err
	}
	if err := expectOID(alg[0], oidAES256CBC, "contentEncryptionAlgorithm"); err != nil {
		return err
	}
	if !alg[1].is(classUniversal, tagOctetString, false) || len(alg[1].content) != ivSize {
		return fmt.Errorf("%w: AES-CBC IV %v of %d bytes", ErrMalformed, alg[1], len(alg[1].content))
	}
	env.iv = alg[1].content
	if eci[2].class != classContextSpecific || eci[2].tag != 0 {
		return fmt.Errorf("%w: encryptedContent is %v", ErrMalformed, eci[2])
	}
	env.ciphertext, err = octets(eci[2])
	if err != nil {
		return err
	}
	if len(env.ciphertext) == 0 || len(env.ciphertext)%aes.BlockSize != 0 {
		return fmt.Errorf("%w: encryptedContent of %d bytes is not whole AES blocks", ErrMalformed, len(env.ciphertext))
	}
	return nil
}

// sequence checks that e is a SEQUENCE of min to max elements.
func sequence(e *element, what string, lo, hi int) ([]*element, error) {
	if !e.is(classUniversal, tagSequence, true) {
		return nil, fmt.Errorf("%w: %s is %v, want SEQUENCE", ErrMalformed, what, e)
	}
	if n := len(e.children); n < lo || n > hi {
		return nil, fmt.Errorf("%w: %s has %d fields", ErrMalformed, what, n)
	}
	return e.children, nil
}

func expectOID(e *element, want asn1.ObjectIdentifier, what string) error {
	if !e.is(classUniversal, tagOID, false) {
		return fmt.Errorf("%w: %s is %v, want OBJECT IDENTIFIER", ErrMalformed, what, e)
	}
	var got asn1.ObjectIdentifier
	// An OID's content is the same in BER and DER; wrap it in a DER header.
	der, err := asn1.Marshal(asn1.RawValue{Tag: tagOID, Bytes: e.content})
	if err == nil {
		_, err = asn1.Unmarshal(der, &got)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrMalformed, what, err)
	}
	if !got.Equal(want) {
		return fmt.Errorf("%w: %s %v, want %v", ErrUnsupported, what, got, want)
	}
	return nil
}

func expectInt(e *element, want byte, what string) error {
	if !e.is(classUniversal, tagInteger, false) {
		return fmt.Errorf("%w: %s is %v, want INTEGER", ErrMalformed, what, e)
	}
	if len(e.content) != 1 || e.content[0] != want {
		return fmt.Errorf("%w: %s %x, want %d", ErrUnsupported, what, e.content, want)
	}
	return nil
}

// expectSHA256 accepts the SHA-256 AlgorithmIdentifier with absent or NULL
// parameters (RFC 5754 2: both occur; KMS sends NULL, OpenSSL omits it).
func expectSHA256(e *element, what string) error {
	alg, err := sequence(e, what, 1, 2)
	if err != nil {
		return err
	}
	if err := expectOID(alg[0], oidSHA256, what); err != nil {
		return err
	}
	if len(alg) == 2 && (!alg[1].is(classUniversal, tagNull, false) || len(alg[1].content) != 0) {
		return fmt.Errorf("%w: %s parameters %v", ErrMalformed, what, alg[1])
	}
	return nil
}

// Encrypt builds EnvelopedData exactly as KMS builds it (BER, indefinite
// lengths, SKI recipient = SHA-256(SPKI), OAEP-SHA-256, AES-256-CBC); used by
// the test KMS. rand supplies the content-encryption key and the IV.
func Encrypt(rand io.Reader, plaintext []byte, pub *rsa.PublicKey) ([]byte, error) {
	if pub == nil {
		return nil, errors.New("cms: nil public key")
	}
	if len(plaintext) > MaxSize-1024 {
		return nil, fmt.Errorf("cms: plaintext of %d bytes exceeds %d", len(plaintext), MaxSize-1024)
	}
	ski, err := SubjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	var kiv [keySize + ivSize]byte
	defer clear(kiv[:])
	if _, err := io.ReadFull(rand, kiv[:]); err != nil {
		return nil, fmt.Errorf("cms: read random: %w", err)
	}
	cek, iv := kiv[:keySize], kiv[keySize:]
	ek, err := rsa.EncryptOAEP(sha256.New(), rand, pub, cek, nil)
	if err != nil {
		return nil, fmt.Errorf("cms: RSA-OAEP: %w", err)
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, fmt.Errorf("cms: %w", err)
	}
	p := aes.BlockSize - len(plaintext)%aes.BlockSize
	ct := append(bytes.Clone(plaintext), bytes.Repeat([]byte{byte(p)}, p)...)
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, ct)
	return marshalEnvelope(ski, ek, iv, ct), nil
}
