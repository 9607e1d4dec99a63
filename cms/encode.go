package cms

import "encoding/asn1"

// The encoder writes the layout of KMS's CiphertextForRecipient: indefinite
// lengths on ContentInfo, its [0], EnvelopedData, EncryptedContentInfo and
// encryptedContent; definite lengths inside recipientInfos and the
// algorithm identifiers; NULL parameters on the SHA-256 identifiers.

// tlv encodes one element with a definite length (DER-style minimal length).
func tlv(id byte, content ...[]byte) []byte {
	n := 0
	for _, c := range content {
		n += len(c)
	}
	out := []byte{id}
	switch {
	case n < 0x80:
		out = append(out, byte(n))
	case n < 0x100:
		out = append(out, 0x81, byte(n))
	case n < 0x10000:
		out = append(out, 0x82, byte(n>>8), byte(n))
	default:
		out = append(out, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
	for _, c := range content {
		out = append(out, c...)
	}
	return out
}

// indefinite encodes a constructed element with an indefinite length.
func indefinite(id byte, content ...[]byte) []byte {
	out := []byte{id, 0x80}
	for _, c := range content {
		out = append(out, c...)
	}
	return append(out, 0, 0)
}

func oid(o asn1.ObjectIdentifier) []byte {
	b, err := asn1.Marshal(o)
	if err != nil {
		panic("cms: constant OID does not marshal: " + err.Error())
	}
	return b
}

// chunkSize is the size of the encryptedContent's OCTET STRING chunks.
const chunkSize = 1024

const (
	idSequence = 0x30
	idSet      = 0x31
	idCtx0Cons = 0xa0
	idCtx1Cons = 0xa1
	idCtx0Prim = 0x80
)

func marshalEnvelope(ski, encryptedKey, iv, ciphertext []byte) []byte {
	sha256Alg := tlv(idSequence, oid(oidSHA256), []byte{tagNull, 0})
	oaep := tlv(idSequence,
		oid(oidRSAESOAEP),
		tlv(idSequence,
			tlv(idCtx0Cons, sha256Alg),
			tlv(idCtx1Cons, tlv(idSequence, oid(oidMGF1), sha256Alg))))
	ktri := tlv(idSequence,
		[]byte{tagInteger, 1, 2},
		tlv(idCtx0Prim, ski),
		oaep,
		tlv(tagOctetString, encryptedKey))
	var chunks [][]byte
	for len(ciphertext) > 0 {
		n := min(len(ciphertext), chunkSize)
		chunks = append(chunks, tlv(tagOctetString, ciphertext[:n]))
		ciphertext = ciphertext[n:]
	}
	eci := indefinite(idSequence,
		oid(oidData),
		tlv(idSequence, oid(oidAES256CBC), tlv(tagOctetString, iv)),
		indefinite(idCtx0Cons, chunks...))
	return indefinite(idSequence,
		oid(oidEnvelopedData),
		indefinite(idCtx0Cons,
			indefinite(idSequence,
				[]byte{tagInteger, 1, 2},
				tlv(idSet, ktri),
				eci)))
}
