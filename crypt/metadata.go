package crypt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Limits on what a header may ask for, matching cryptsetup's own.
const (
	maxKeyslots      = 32
	afStripes        = 4000
	maxKeySize       = 512     // bytes; far above any cipher's key
	maxArgon2Memory  = 4 << 20 // KiB (4 GiB), cryptsetup's maximum
	minArgon2Memory  = 32      // KiB, cryptsetup's minimum
	maxArgon2Threads = 4       // cryptsetup's maximum parallel cost
	minArgon2Time    = 4       // cryptsetup's minimum forced iterations
	minPBKDF2Iter    = 1000    // cryptsetup's minimum for pbkdf2
	maxSaltLen       = 1024    // far above the 32 bytes cryptsetup writes
	areaAlign        = 4096    // keyslot areas are 4 KiB aligned
	maxIterations    = math.MaxUint32
	digestSaltLen    = 32 // cryptsetup's LUKS_SALTSIZE, required of digests
	luks1DigestLen   = 20 // cryptsetup's LUKS_DIGESTSIZE
)

// u64 is a LUKS2 JSON "string-encoded uint64": a JSON string of decimal
// digits. Values above MaxInt64 are refused so offsets never overflow int64.
type u64 uint64

func (v u64) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, strconv.FormatUint(uint64(v), 10)), nil
}

func (v *u64) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("want a decimal string, got %.32s", b)
	}
	n, err := parseU64(s)
	if err != nil {
		return err
	}
	*v = u64(n)
	return nil
}

func parseU64(s string) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > math.MaxInt64 {
		return 0, fmt.Errorf("number %q out of range", s)
	}
	return n, nil
}

// segSize is a segment size: "dynamic" or a string-encoded uint64.
type segSize struct {
	dynamic bool
	n       uint64
}

func (s segSize) MarshalJSON() ([]byte, error) {
	if s.dynamic {
		return []byte(`"dynamic"`), nil
	}
	return u64(s.n).MarshalJSON()
}

func (s *segSize) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("want a size string, got %.32s", b)
	}
	if str == "dynamic" {
		*s = segSize{dynamic: true}
		return nil
	}
	n, err := parseU64(str)
	if err != nil {
		return err
	}
	*s = segSize{n: n}
	return nil
}

// metadata is the LUKS2 JSON area. Field order matches cryptsetup's output.
type metadata struct {
	Keyslots map[string]*keyslot        `json:"keyslots"`
	Tokens   map[string]json.RawMessage `json:"tokens"`
	Segments map[string]*segment        `json:"segments"`
	Digests  map[string]*digest         `json:"digests"`
	Config   config                     `json:"config"`
}

type keyslot struct {
	Type     string  `json:"type"`
	KeySize  int     `json:"key_size"`
	AF       afJSON  `json:"af"`
	Area     area    `json:"area"`
	KDF      kdfJSON `json:"kdf"`
	Priority *int    `json:"priority,omitempty"`
}

type afJSON struct {
	Type    string `json:"type"`
	Stripes int    `json:"stripes"`
	Hash    string `json:"hash"`
}

type area struct {
	Type       string `json:"type"`
	Offset     u64    `json:"offset"`
	Size       u64    `json:"size"`
	Encryption string `json:"encryption"`
	KeySize    int    `json:"key_size"`
}

type kdfJSON struct {
	Type       string `json:"type"`
	Hash       string `json:"hash,omitempty"`
	Iterations int64  `json:"iterations,omitempty"`
	Time       int64  `json:"time,omitempty"`
	Memory     int64  `json:"memory,omitempty"`
	CPUs       int64  `json:"cpus,omitempty"`
	Salt       []byte `json:"salt"`
}

type segment struct {
	Type       string   `json:"type"`
	Offset     u64      `json:"offset"`
	Size       segSize  `json:"size"`
	IVTweak    u64      `json:"iv_tweak"`
	Encryption string   `json:"encryption"`
	SectorSize int      `json:"sector_size"`
	Flags      []string `json:"flags,omitempty"`
}

type digest struct {
	Type       string   `json:"type"`
	Keyslots   []string `json:"keyslots"`
	Segments   []string `json:"segments"`
	Hash       string   `json:"hash"`
	Iterations int64    `json:"iterations"`
	Salt       []byte   `json:"salt"`
	Digest     []byte   `json:"digest"`
}

type config struct {
	JSONSize     u64           `json:"json_size"`
	KeyslotsSize u64           `json:"keyslots_size"`
	Flags        []string      `json:"flags,omitempty"`
	Requirements *requirements `json:"requirements,omitempty"`
}

type requirements struct {
	Mandatory []string `json:"mandatory,omitempty"`
}

// parseMetadata decodes and validates a JSON area (up to its first NUL)
// belonging to a metadata area of hdrSize bytes.
func parseMetadata(jsonArea []byte, hdrSize uint64) (*metadata, error) {
	end := bytes.IndexByte(jsonArea, 0)
	if end < 0 {
		return nil, corruptf("JSON area is not NUL-terminated")
	}
	var md metadata
	if err := json.Unmarshal(jsonArea[:end], &md); err != nil {
		return nil, corruptf("JSON: %v", err)
	}
	if err := md.validate(hdrSize); err != nil {
		return nil, err
	}
	return &md, nil
}

func validID(id string) (int, bool) {
	n, err := strconv.Atoi(id)
	if err != nil || n < 0 || strconv.Itoa(n) != id {
		return 0, false
	}
	return n, true
}

// validate checks the structural rules cryptsetup enforces on load, plus the
// limits that keep Open bounded. Features we do not implement are
// ErrUnsupported; anything cryptsetup itself would refuse is
// ErrCorruptHeader.
func (md *metadata) validate(hdrSize uint64) error {
	if md.Keyslots == nil || md.Segments == nil || md.Digests == nil || md.Tokens == nil {
		return corruptf("missing keyslots, tokens, segments or digests object")
	}
	c := md.Config
	if uint64(c.JSONSize) != hdrSize-binHeaderSize {
		return corruptf("config json_size %d does not match metadata size %d", c.JSONSize, hdrSize)
	}
	if c.KeyslotsSize%areaAlign != 0 {
		return corruptf("keyslots_size %d is not 4 KiB aligned", c.KeyslotsSize)
	}
	if c.Requirements != nil && len(c.Requirements.Mandatory) > 0 {
		return unsupportedf("mandatory requirements %q", c.Requirements.Mandatory)
	}
	ksStart := 2 * hdrSize
	ksEnd := ksStart + uint64(c.KeyslotsSize) // both ≤ MaxInt64: no overflow
	if ksEnd > math.MaxInt64 {
		return corruptf("keyslots area end overflows")
	}

	// Segments: exactly one crypt segment "0".
	if len(md.Segments) != 1 || md.Segments["0"] == nil {
		return unsupportedf("%d segments (only a single segment 0 is supported)", len(md.Segments))
	}
	s := md.Segments["0"]
	if s.Type != "crypt" {
		return unsupportedf("segment type %q", s.Type)
	}
	if s.Encryption != "aes-xts-plain64" {
		return unsupportedf("segment cipher %q (only aes-xts-plain64)", s.Encryption)
	}
	switch s.SectorSize {
	case 512, 1024, 2048, 4096:
	default:
		return corruptf("segment sector_size %d", s.SectorSize)
	}
	if uint64(s.Offset)%uint64(s.SectorSize) != 0 && uint64(s.Offset)%512 != 0 {
		return corruptf("segment offset %d not sector aligned", s.Offset)
	}
	if uint64(s.Offset)%512 != 0 {
		return corruptf("segment offset %d not 512-byte aligned", s.Offset)
	}
	if !s.Size.dynamic {
		if s.Size.n == 0 || s.Size.n%uint64(s.SectorSize) != 0 {
			return corruptf("segment size %d not a positive multiple of sector size %d", s.Size.n, s.SectorSize)
		}
		if uint64(s.Offset)+s.Size.n > math.MaxInt64 {
			return corruptf("segment end overflows")
		}
	}
	if s.Offset != 0 && uint64(s.Offset) < ksEnd {
		return corruptf("segment offset %d overlaps metadata and keyslots (end %d)", s.Offset, ksEnd)
	}
	// A non-zero iv_tweak appears only mid-reencryption, where cryptsetup
	// and the dm table disagree on whether it applies: refuse rather than
	// risk a table that decrypts to garbage.
	if s.IVTweak != 0 {
		return unsupportedf("segment iv_tweak %d", s.IVTweak)
	}
	if len(s.Flags) > 0 {
		return unsupportedf("segment flags %q", s.Flags)
	}

	// Keyslots: within the keyslots area, not overlapping each other.
	type iv struct{ lo, hi uint64 }
	var used []iv
	for id, k := range md.Keyslots {
		if n, ok := validID(id); !ok || n >= maxKeyslots {
			return corruptf("keyslot id %q", id)
		}
		if k == nil {
			return corruptf("keyslot %s is null", id)
		}
		if k.Type != "luks2" {
			return unsupportedf("keyslot %s type %q", id, k.Type)
		}
		if k.KeySize <= 0 || k.KeySize > maxKeySize {
			return corruptf("keyslot %s key_size %d", id, k.KeySize)
		}
		if k.AF.Type != "luks1" || k.AF.Stripes != afStripes {
			return unsupportedf("keyslot %s anti-forensic splitter %q with %d stripes", id, k.AF.Type, k.AF.Stripes)
		}
		if _, ok := hashByName(k.AF.Hash); !ok {
			return unsupportedf("keyslot %s AF hash %q", id, k.AF.Hash)
		}
		a := k.Area
		if a.Type != "raw" {
			return unsupportedf("keyslot %s area type %q", id, a.Type)
		}
		if a.Encryption != "aes-xts-plain64" || (a.KeySize != 32 && a.KeySize != 64) {
			return unsupportedf("keyslot %s area cipher %q with %d-byte key", id, a.Encryption, a.KeySize)
		}
		lo, hi := uint64(a.Offset), uint64(a.Offset)+uint64(a.Size)
		if lo < ksStart || hi > ksEnd || lo%512 != 0 {
			return corruptf("keyslot %s area [%d, %d) outside keyslots area [%d, %d)", id, lo, hi, ksStart, ksEnd)
		}
		if need := uint64(k.KeySize) * afStripes; uint64(a.Size) < need {
			return corruptf("keyslot %s area size %d below %d bytes of key material", id, a.Size, need)
		}
		for _, u := range used {
			if lo < u.hi && u.lo < hi {
				return corruptf("keyslot %s area overlaps another keyslot", id)
			}
		}
		used = append(used, iv{lo, hi})
		if k.Priority != nil && (*k.Priority < 0 || *k.Priority > 2) {
			return corruptf("keyslot %s priority %d", id, *k.Priority)
		}
		if err := k.KDF.validate(); err != nil {
			return fmt.Errorf("keyslot %s: %w", id, err)
		}
	}

	// Digests: pbkdf2, referring to existing keyslots and segments.
	for id, d := range md.Digests {
		if _, ok := validID(id); !ok {
			return corruptf("digest id %q", id)
		}
		if d == nil {
			return corruptf("digest %s is null", id)
		}
		if d.Type != "pbkdf2" {
			return unsupportedf("digest %s type %q", id, d.Type)
		}
		newHash, ok := hashByName(d.Hash)
		if !ok {
			return unsupportedf("digest %s hash %q", id, d.Hash)
		}
		if d.Iterations < 1 || d.Iterations > maxIterations {
			return corruptf("digest %s iterations %d", id, d.Iterations)
		}
		// As cryptsetup verifies: a 32-byte salt, and a digest as long
		// as the hash's output or 20 bytes (LUKS1's SHA-1 size, kept by
		// converted headers). A shorter digest would accept a wrong
		// volume key by chance (1 in 256 for one byte).
		if len(d.Salt) != digestSaltLen {
			return corruptf("digest %s salt of %d bytes (want %d)", id, len(d.Salt), digestSaltLen)
		}
		if n := len(d.Digest); n != luks1DigestLen && n != newHash().Size() {
			return corruptf("digest %s of %d bytes (want %d or %d for %s)", id, n, luks1DigestLen, newHash().Size(), d.Hash)
		}
		for _, ks := range d.Keyslots {
			if md.Keyslots[ks] == nil {
				return corruptf("digest %s names missing keyslot %q", id, ks)
			}
		}
		for _, sg := range d.Segments {
			if md.Segments[sg] == nil {
				return corruptf("digest %s names missing segment %q", id, sg)
			}
		}
	}
	for id := range md.Keyslots {
		if md.digestFor(id) == nil {
			return corruptf("keyslot %s has no digest", id)
		}
	}
	return md.validateTokens()
}

func (k *kdfJSON) validate() error {
	if len(k.Salt) == 0 || len(k.Salt) > maxSaltLen {
		return corruptf("kdf salt length %d", len(k.Salt))
	}
	switch k.Type {
	case "pbkdf2":
		if _, ok := hashByName(k.Hash); !ok {
			return unsupportedf("pbkdf2 hash %q", k.Hash)
		}
		if k.Iterations < 1 || k.Iterations > maxIterations {
			return corruptf("pbkdf2 iterations %d", k.Iterations)
		}
	case "argon2i", "argon2id":
		if k.Time < 1 || k.Time > maxIterations {
			return corruptf("argon2 time %d", k.Time)
		}
		if k.Memory < 8 || k.Memory > maxArgon2Memory {
			return corruptf("argon2 memory %d KiB", k.Memory)
		}
		if k.CPUs < 1 || k.CPUs > 255 {
			return corruptf("argon2 cpus %d", k.CPUs)
		}
	default:
		return unsupportedf("kdf %q", k.Type)
	}
	return nil
}

// digestFor returns the digest covering keyslot id and segment 0.
func (md *metadata) digestFor(id string) *digest {
	for _, d := range md.Digests {
		if slices.Contains(d.Keyslots, id) && slices.Contains(d.Segments, "0") {
			return d
		}
	}
	return nil
}

// marshalJSONArea encodes md into a zero-padded JSON area of size n.
func (md *metadata) marshalJSONArea(n int) ([]byte, error) {
	// Without HTML escaping, so token fields read back byte for byte.
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	if err := e.Encode(md); err != nil {
		return nil, err
	}
	js := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(js) >= n {
		return nil, fmt.Errorf("%w: JSON metadata %d bytes exceeds the %d-byte area", ErrInvalidArgument, len(js), n)
	}
	out := make([]byte, n)
	copy(out, js)
	return out, nil
}
