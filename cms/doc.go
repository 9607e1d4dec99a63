// Package cms opens and builds the CMS EnvelopedData that AWS KMS returns to
// a Nitro Enclave in CiphertextForRecipient.
//
// When a KMS request carries a Recipient (an NSM attestation document holding
// an RSA public key), KMS does not return the plaintext: it returns it
// enveloped for that key, in one fixed shape (RFC 5652):
//
//	ContentInfo (id-envelopedData), BER with indefinite lengths
//	  EnvelopedData version 2
//	    one KeyTransRecipientInfo version 2
//	      rid: subjectKeyIdentifier = SHA-256 of the key's SubjectPublicKeyInfo DER
//	      keyEncryptionAlgorithm: RSAES-OAEP, SHA-256, MGF1-SHA-256 (RFC 8017)
//	      encryptedKey: the 32-byte content-encryption key
//	    EncryptedContentInfo (id-data), AES-256-CBC with a 16-byte IV,
//	      encryptedContent as a constructed OCTET STRING of chunks
//
// encoding/asn1 reads DER only, and the maintained Go PKCS#7 libraries lack
// RSAES-OAEP or subjectKeyIdentifier recipients, so the package carries a
// small BER reader of its own. The reader is bounded (input size, nesting
// depth, element count) before it allocates, and Decrypt accepts exactly the
// shape above: any other version, algorithm, parameter, recipient count or
// recipient identifier is refused with a sentinel error (ErrMalformed,
// ErrUnsupported, ErrRecipient).
//
// Decrypt reports every failure to recover the plaintext once the recipient
// matched (RSA-OAEP decoding, key length, CBC padding) as the single
// ErrDecrypt, and checks the padding in constant time, so the error does not
// tell a padding failure from a key-transport failure.
//
// Encrypt builds the same shape byte for byte as KMS does; the test KMS uses
// it, and OpenSSL's "cms -decrypt" opens it.
package cms
