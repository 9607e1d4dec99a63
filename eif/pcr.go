package eif

import (
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"hash"
)

// HashAlgorithm is the "HashAlgorithm" value nitro-cli prints: the Rust
// Debug form of sha2::Sha384.
const HashAlgorithm = "Sha384 { ... }"

// PCRSize is the size of a SHA-384 PCR value.
const PCRSize = sha512.Size384

// Hex is a byte string that marshals to lowercase hex.
type Hex []byte

// String returns the lowercase hex form.
func (h Hex) String() string { return hex.EncodeToString(h) }

// MarshalText implements encoding.TextMarshaler.
func (h Hex) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hex) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("eif: bad hex %q: %w", b, err)
	}
	*h = v
	return nil
}

// PCRs are the enclave measurements an EIF determines, as the Nitro
// hypervisor computes them at boot. Each is a TPM-style extend of a zero
// register with the SHA-384 of the measured bytes:
//
//	PCRn = SHA384(0^48 || SHA384(measured bytes))
//
// PCR0 measures the kernel, cmdline and all ramdisks (in file order), PCR1
// the kernel, cmdline and first ("bootstrap") ramdisk, PCR2 the other
// ("application") ramdisks, PCR8 the DER signing certificate (signed
// images only). Metadata and signature sections are not measured.
//
// PCRs marshals to JSON as nitro-cli's "Measurements" object; wrap it in
// Measurements for the whole of nitro-cli build-enclave's output.
type PCRs struct {
	HashAlgorithm string `json:"HashAlgorithm"`
	PCR0          Hex    `json:"PCR0"`
	PCR1          Hex    `json:"PCR1"`
	PCR2          Hex    `json:"PCR2"`
	PCR8          Hex    `json:"PCR8,omitempty"`
}

// Measurements is nitro-cli build-enclave's JSON output:
// {"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": ...}}.
type Measurements struct {
	Measurements PCRs `json:"Measurements"`
}

// Extend returns SHA384(0^48 || digest): a zeroed PCR extended once.
func Extend(digest []byte) []byte {
	h := sha512.New384()
	h.Write(make([]byte, PCRSize))
	h.Write(digest)
	return h.Sum(nil)
}

// measurer feeds sections to the PCR hashers in file order, as the
// hypervisor (and nitro-cli's EifReader) does.
type measurer struct {
	image, bootstrap, app, cert hash.Hash
	ramdisks                    int
	signed                      bool
}

func newMeasurer() *measurer {
	return &measurer{image: sha512.New384(), bootstrap: sha512.New384(), app: sha512.New384(), cert: sha512.New384()}
}

// writer returns where a section's bytes go for measurement, or nil when
// the section is not measured. Call once per section, in file order.
func (m *measurer) writer(t SectionType) hashWriter {
	switch t {
	case SectionKernel, SectionCmdline:
		return hashWriter{m.image, m.bootstrap}
	case SectionRamdisk:
		m.ramdisks++
		if m.ramdisks == 1 {
			return hashWriter{m.image, m.bootstrap}
		}
		return hashWriter{m.image, m.app}
	}
	return hashWriter{}
}

// certDER measures a signing certificate into PCR8.
func (m *measurer) certDER(der []byte) {
	m.signed = true
	m.cert.Write(der)
}

func (m *measurer) pcrs() PCRs {
	p := PCRs{
		HashAlgorithm: HashAlgorithm,
		PCR0:          Extend(m.image.Sum(nil)),
		PCR1:          Extend(m.bootstrap.Sum(nil)),
		PCR2:          Extend(m.app.Sum(nil)),
	}
	if m.signed {
		p.PCR8 = Extend(m.cert.Sum(nil))
	}
	return p
}

// hashWriter writes to up to two hashes; hash.Hash writes never fail.
type hashWriter [2]hash.Hash

func (w hashWriter) Write(p []byte) (int, error) {
	for _, h := range w {
		if h != nil {
			h.Write(p)
		}
	}
	return len(p), nil
}
