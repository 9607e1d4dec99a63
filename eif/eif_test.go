package eif

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
)

func randBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func testSpec(ramdisks ...[]byte) *Spec {
	s := &Spec{
		Kernel:  bytes.NewReader(randBytes(1, 70001)),
		Cmdline: "reboot=k panic=30 pci=off nomodules console=ttyS0 enclave_storage.verity_root=ab",
		Metadata: Metadata{
			ImageName:    "app",
			ImageVersion: "1.0",
			BuildMetadata: BuildInfo{
				BuildTime:        FormatBuildTime(time.Unix(0, 0)),
				BuildTool:        "imgbuild",
				BuildToolVersion: "test",
				OperatingSystem:  "Linux",
				KernelVersion:    "6.1",
			},
		},
	}
	for _, r := range ramdisks {
		s.Ramdisks = append(s.Ramdisks, bytes.NewReader(r))
	}
	return s
}

func build(t testing.TB, s *Spec) ([]byte, PCRs) {
	t.Helper()
	var buf bytes.Buffer
	p, err := Build(context.Background(), &buf, s)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), p
}

// pcrsByHand computes PCRs the way AWS documents them, independently of
// measurer: SHA384(zeros || SHA384(concatenated measured sections)).
func pcrsByHand(kernel []byte, cmdline string, ramdisks [][]byte) (pcr0, pcr1, pcr2 string) {
	extend := func(parts ...[]byte) string {
		d := sha512.Sum384(bytes.Join(parts, nil))
		e := sha512.Sum384(append(make([]byte, 48), d[:]...))
		return hex.EncodeToString(e[:])
	}
	all := append([][]byte{kernel, []byte(cmdline)}, ramdisks...)
	return extend(all...), extend(kernel, []byte(cmdline), ramdisks[0]), extend(ramdisks[1:]...)
}

func TestHeaderEncoding(t *testing.T) {
	h := Header{Version: 4, Flags: 1, DefaultMem: 0x0102030405060708, DefaultCPUs: 2, Reserved: 0xaaaa, NumSections: 5, Unused: 0xbbbbbbbb, CRC32: 0xdeadbeef}
	copy(h.Magic[:], Magic)
	h.SectionOffsets[0], h.SectionSizes[31] = 548, 0x1122
	b, _ := h.MarshalBinary()
	if len(b) != HeaderSize {
		t.Fatalf("header is %d bytes", len(b))
	}
	checks := []struct {
		off  int
		want []byte
	}{
		{0, []byte{0x2e, 0x65, 0x69, 0x66}},
		{4, []byte{0, 4, 0, 1}},
		{8, []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{16, []byte{0, 0, 0, 0, 0, 0, 0, 2}},
		{24, []byte{0xaa, 0xaa, 0, 5}},
		{28, []byte{0, 0, 0, 0, 0, 0, 0x02, 0x24}},
		{28 + 8*32 + 8*31, []byte{0, 0, 0, 0, 0, 0, 0x11, 0x22}},
		{540, []byte{0xbb, 0xbb, 0xbb, 0xbb, 0xde, 0xad, 0xbe, 0xef}},
	}
	for _, c := range checks {
		if got := b[c.off : c.off+len(c.want)]; !bytes.Equal(got, c.want) {
			t.Errorf("at %d: % x, want % x", c.off, got, c.want)
		}
	}
	var h2 Header
	if err := h2.UnmarshalBinary(b); err != nil || h2 != h {
		t.Fatalf("round trip: %v %+v", err, h2)
	}
	sh := SectionHeader{Type: SectionSignature, Flags: 3, Size: 123}
	sb, _ := sh.MarshalBinary()
	if want := []byte{0, 4, 0, 3, 0, 0, 0, 0, 0, 0, 0, 123}; !bytes.Equal(sb, want) {
		t.Errorf("section header % x, want % x", sb, want)
	}
}

func TestBuildRead(t *testing.T) {
	for _, n := range []int{1, 2, 3} {
		t.Run(strings.Repeat("r", n), func(t *testing.T) {
			var rds [][]byte
			for i := range n {
				rds = append(rds, randBytes(uint64(10+i), 1000*(i+1)+i))
			}
			spec := testSpec(rds...)
			img, pcrs := build(t, spec)

			// Layout by hand: header, then kernel, cmdline, metadata, ramdisks.
			kernel := randBytes(1, 70001)
			meta := `{"ImageName":"app","ImageVersion":"1.0","BuildMetadata":{"BuildTime":"1970-01-01T00:00:00+00:00","BuildTool":"imgbuild","BuildToolVersion":"test","OperatingSystem":"Linux","KernelVersion":"6.1"},"DockerInfo":null,"CustomMetadata":null}`
			want := []struct {
				typ  SectionType
				data []byte
			}{{SectionKernel, kernel}, {SectionCmdline, []byte(spec.Cmdline)}, {SectionMetadata, []byte(meta)}}
			for _, r := range rds {
				want = append(want, struct {
					typ  SectionType
					data []byte
				}{SectionRamdisk, r})
			}
			off := HeaderSize
			for i, w := range want {
				if got := binary.BigEndian.Uint64(img[28+8*i:]); got != uint64(off) {
					t.Fatalf("section %d offset %d, want %d", i, got, off)
				}
				if got := binary.BigEndian.Uint64(img[28+8*32+8*i:]); got != uint64(len(w.data)) {
					t.Fatalf("section %d size %d, want %d", i, got, len(w.data))
				}
				if typ := binary.BigEndian.Uint16(img[off:]); typ != uint16(w.typ) {
					t.Fatalf("section %d type %d, want %d", i, typ, w.typ)
				}
				if !bytes.Equal(img[off+12:off+12+len(w.data)], w.data) {
					t.Fatalf("section %d (%v) data differs:\n%q", i, w.typ, img[off+12:off+12+min(len(w.data), 300)])
				}
				off += 12 + len(w.data)
			}
			if off != len(img) {
				t.Fatalf("image is %d bytes, want %d", len(img), off)
			}
			if got := binary.BigEndian.Uint16(img[26:]); got != uint16(len(want)) {
				t.Fatalf("num_sections %d", got)
			}
			// CRC32 (IEEE) of everything but the CRC field itself.
			crc := crc32.ChecksumIEEE(append(append([]byte{}, img[:544]...), img[548:]...))
			if got := binary.BigEndian.Uint32(img[544:]); got != crc {
				t.Fatalf("crc %08x, want %08x", got, crc)
			}
			p0, p1, p2 := pcrsByHand(kernel, spec.Cmdline, rds)
			if pcrs.PCR0.String() != p0 || pcrs.PCR1.String() != p1 || pcrs.PCR2.String() != p2 || pcrs.PCR8 != nil {
				t.Fatalf("PCRs %+v\nwant %s %s %s", pcrs, p0, p1, p2)
			}

			f, err := Read(bytes.NewReader(img), int64(len(img)))
			if err != nil {
				t.Fatal(err)
			}
			if !f.CRCValid() || f.Cmdline != spec.Cmdline || len(f.Sections) != len(want) {
				t.Fatalf("read back %+v", f)
			}
			if f.Header.Version != 4 || f.Header.DefaultMem != 1<<30 || f.Header.DefaultCPUs != 2 {
				t.Fatalf("header %+v", f.Header)
			}
			mj, _ := json.Marshal(f.Metadata)
			if string(mj) != meta {
				t.Fatalf("metadata %s", mj)
			}
			rj, _ := json.Marshal(f.PCRs)
			bj, _ := json.Marshal(pcrs)
			if string(rj) != string(bj) {
				t.Fatalf("Read PCRs %s, Build PCRs %s", rj, bj)
			}
			// Build again: same bytes.
			img2, _ := build(t, testSpec(rds...))
			if !bytes.Equal(img, img2) {
				t.Fatal("Build is not reproducible")
			}
		})
	}
}

func TestMeasurementsJSON(t *testing.T) {
	p := PCRs{HashAlgorithm: HashAlgorithm, PCR0: make(Hex, 48), PCR1: make(Hex, 48), PCR2: make(Hex, 48)}
	p.PCR0[0] = 0xab
	b, err := json.MarshalIndent(Measurements{p}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	z := strings.Repeat("0", 96)
	want := "{\n  \"Measurements\": {\n    \"HashAlgorithm\": \"Sha384 { ... }\",\n    \"PCR0\": \"ab" + z[2:] + "\",\n    \"PCR1\": \"" + z + "\",\n    \"PCR2\": \"" + z + "\"\n  }\n}"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	var back Measurements
	if err := json.Unmarshal(b, &back); err != nil || !bytes.Equal(back.Measurements.PCR0, p.PCR0) {
		t.Fatalf("unmarshal: %v %+v", err, back)
	}
}

func TestBuildErrors(t *testing.T) {
	rd := []byte("x")
	tests := []struct {
		name string
		spec func() *Spec
	}{
		{"no kernel", func() *Spec { s := testSpec(rd); s.Kernel = nil; return s }},
		{"no ramdisk", func() *Spec { return testSpec() }},
		{"nul cmdline", func() *Spec { s := testSpec(rd); s.Cmdline = "a\x00b"; return s }},
		{"too many sections", func() *Spec { return testSpec(make([][]byte, 30)...) }},
		{"bad custom json", func() *Spec { s := testSpec(rd); s.Metadata.CustomMetadata = []byte("{"); return s }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Build(context.Background(), new(bytes.Buffer), tt.spec()); !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("got %v, want ErrInvalidSpec", err)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(ctx, new(bytes.Buffer), testSpec(rd)); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// flipping is a Blob whose bytes change after the first full read.
type flipping struct {
	b     []byte
	reads int
}

func (f *flipping) Size() int64 { return int64(len(f.b)) }
func (f *flipping) ReadAt(p []byte, off int64) (int, error) {
	f.reads++
	n := copy(p, f.b[off:])
	if f.reads > 1 {
		p[0] ^= 1
	}
	return n, nil
}

func TestBuildInputChanged(t *testing.T) {
	s := testSpec([]byte("bootstrap"))
	s.Ramdisks = append(s.Ramdisks, &flipping{b: []byte("app")})
	if _, err := Build(context.Background(), new(bytes.Buffer), s); !errors.Is(err, ErrInputChanged) {
		t.Fatalf("got %v", err)
	}
}

func TestReadErrors(t *testing.T) {
	img, _ := build(t, testSpec([]byte("boot"), []byte("app")))
	mut := func(f func(b []byte) []byte) []byte { return f(append([]byte{}, img...)) }
	put16 := func(b []byte, off int, v uint16) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
	put64 := func(b []byte, off int, v uint64) []byte { binary.BigEndian.PutUint64(b[off:], v); return b }
	kernelSize := 70001
	cmdOff := HeaderSize + 12 + kernelSize
	tests := []struct {
		name string
		img  []byte
		want error
	}{
		{"short", img[:100], ErrFormat},
		{"magic", mut(func(b []byte) []byte { b[0] = 'x'; return b }), ErrNotEIF},
		{"zero sections", mut(func(b []byte) []byte { return put16(b, 26, 0) }), ErrFormat},
		{"33 sections", mut(func(b []byte) []byte { return put16(b, 26, 33) }), ErrFormat},
		{"fewer sections", mut(func(b []byte) []byte { return put16(b, 26, 4) }), ErrFormat},
		{"truncated", img[:len(img)-1], ErrFormat},
		{"trailing", append(append([]byte{}, img...), 0), ErrFormat},
		{"bad offset", mut(func(b []byte) []byte { return put64(b, 28+8, 5) }), ErrFormat},
		{"size mismatch", mut(func(b []byte) []byte { return put64(b, 28+8*32, 5) }), ErrFormat},
		{"huge size", mut(func(b []byte) []byte { put64(b, 28+8*32, 1<<62); return put64(b, HeaderSize+4, 1<<62) }), ErrFormat},
		{"invalid type", mut(func(b []byte) []byte { return put16(b, HeaderSize, 0) }), ErrFormat},
		{"unknown type", mut(func(b []byte) []byte { return put16(b, HeaderSize, 6) }), ErrFormat},
		{"two cmdlines", mut(func(b []byte) []byte { return put16(b, HeaderSize, uint16(SectionCmdline)) }), ErrFormat},
		{"stray table entry", mut(func(b []byte) []byte { return put64(b, 28+8*31, 1) }), ErrFormat},
		{"bad metadata", mut(func(b []byte) []byte {
			metaOff := cmdOff + 12 + len(testSpec().Cmdline)
			b[metaOff+12] = '['
			return b
		}), ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Read(bytes.NewReader(tt.img), int64(len(tt.img)))
			if !errors.Is(err, tt.want) || f != nil {
				t.Fatalf("got %v (file %v), want %v", err, f != nil, tt.want)
			}
		})
	}
	// A flipped data byte only breaks the CRC: the file is still returned.
	bad := mut(func(b []byte) []byte { b[len(b)-1] ^= 0xff; return b })
	f, err := Read(bytes.NewReader(bad), int64(len(bad)))
	var ce *CRCError
	if !errors.As(err, &ce) || f == nil || f.CRCValid() || ce.Header != f.Header.CRC32 || ce.Computed != f.CRC32 {
		t.Fatalf("crc flip: %v %v", err, f)
	}
}

func TestFormatBuildTime(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Unix(0, 0), "1970-01-01T00:00:00+00:00"},
		{time.Unix(1700000000, 0), "2023-11-14T22:13:20+00:00"},
		{time.Unix(1700000000, 5), "2023-11-14T22:13:20.000000005+00:00"},
	} {
		if got := FormatBuildTime(c.t); got != c.want {
			t.Errorf("%v: %s, want %s", c.t, got, c.want)
		}
	}
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if tm, ok, err := SourceDateEpoch(); err != nil || !ok || tm.Unix() != 1700000000 {
		t.Errorf("SourceDateEpoch: %v %v %v", tm, ok, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "soon")
	if _, _, err := SourceDateEpoch(); err == nil {
		t.Error("bad SOURCE_DATE_EPOCH accepted")
	}
}

func FuzzRead(f *testing.F) {
	small := testSpec([]byte("boot"), []byte("app"))
	small.Kernel = bytes.NewReader([]byte("kernel"))
	img, _ := build(f, small)
	f.Add(img)
	f.Add(img[:HeaderSize])
	if g, err := os.ReadFile("testdata/tiny.eif"); err == nil {
		f.Add(g)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Read(bytes.NewReader(b), int64(len(b)))
		if err == nil && file == nil {
			t.Fatal("nil file without error")
		}
		if file != nil {
			if _, err := json.Marshal(file.PCRs); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func BenchmarkBuild64MiB(b *testing.B) {
	rd := randBytes(3, 64<<20)
	s := testSpec([]byte("boot"), rd)
	var out bytes.Buffer
	b.SetBytes(int64(len(rd)))
	for b.Loop() {
		out.Reset()
		if _, err := Build(context.Background(), &out, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRead64MiB(b *testing.B) {
	rd := randBytes(3, 64<<20)
	img, _ := build(b, testSpec([]byte("boot"), rd))
	r := bytes.NewReader(img)
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		if _, err := Read(r, int64(len(img))); err != nil {
			b.Fatal(err)
		}
	}
}
