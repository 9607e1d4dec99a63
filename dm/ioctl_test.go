package dm

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLayoutMatchesKernelHeader compiles testdata/layout.c against the
// installed <linux/dm-ioctl.h> and compares every size, offset, ioctl number
// and flag this package hard-codes.
func TestLayoutMatchesKernelHeader(t *testing.T) {
	cc, err := exec.LookPath("cc")
	if err != nil {
		t.Skip("no C compiler (cc) installed; cannot check the ABI against <linux/dm-ioctl.h>")
	}
	if _, err := os.Stat("/usr/include/linux/dm-ioctl.h"); err != nil {
		t.Skip("kernel headers not installed (/usr/include/linux/dm-ioctl.h); install linux-libc-dev")
	}
	bin := filepath.Join(t.TempDir(), "layout")
	if out, err := exec.Command(cc, "-o", bin, "testdata/layout.c").CombinedOutput(); err != nil {
		t.Fatalf("compile testdata/layout.c: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).Output()
	if err != nil {
		t.Fatalf("run layout: %v", err)
	}
	got := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		n, err := strconv.ParseUint(v, 10, 64)
		if !ok || err != nil {
			t.Fatalf("bad layout line %q", sc.Text())
		}
		got[k] = n
	}
	want := map[string]uint64{
		"headerSize":               headerSize,
		"specSize":                 specSize,
		"nameListName":             nameListName,
		"offName":                  offName,
		"offUUID":                  offUUID,
		"offDev":                   40,
		"offFlags":                 28,
		"specNext":                 20,
		"specType":                 24,
		"DM_VERSION":               uint64(ioctlRequest(cmdVersion)),
		"DM_LIST_DEVICES":          uint64(ioctlRequest(cmdListDevices)),
		"DM_DEV_CREATE":            uint64(ioctlRequest(cmdDevCreate)),
		"DM_DEV_REMOVE":            uint64(ioctlRequest(cmdDevRemove)),
		"DM_DEV_SUSPEND":           uint64(ioctlRequest(cmdDevSuspend)),
		"DM_DEV_STATUS":            uint64(ioctlRequest(cmdDevStatus)),
		"DM_TABLE_LOAD":            uint64(ioctlRequest(cmdTableLoad)),
		"DM_TABLE_STATUS":          uint64(ioctlRequest(cmdTableStatus)),
		"DM_READONLY_FLAG":         flagReadOnly,
		"DM_SUSPEND_FLAG":          flagSuspend,
		"DM_STATUS_TABLE_FLAG":     flagStatusTable,
		"DM_ACTIVE_PRESENT_FLAG":   flagActivePresent,
		"DM_INACTIVE_PRESENT_FLAG": flagInactive,
		"DM_BUFFER_FULL_FLAG":      flagBufferFull,
		"DM_SECURE_DATA_FLAG":      flagSecureData,
		"DM_VERSION_MAJOR":         uint64(abiVersion[0]),
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ABI mismatch with <linux/dm-ioctl.h> (-ours +header):\n%s", diff)
	}
}

func TestHeaderRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    header
		data []byte
		size int
	}{
		{name: "empty", h: header{Version: abiVersion}},
		{name: "full", h: header{Version: [3]uint32{4, 47, 0}, TargetCount: 2, OpenCount: -1, Flags: flagReadOnly | flagSecureData,
			EventNr: 7, Dev: 0xfd03, Name: strings.Repeat("n", nameLen-1), UUID: strings.Repeat("u", uuidLen-1)}, data: []byte("abc"), size: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.h.marshal(tt.data, tt.size)
			if err != nil {
				t.Fatal(err)
			}
			if len(b)%8 != 0 || len(b) < max(tt.size, headerSize+len(tt.data)) {
				t.Fatalf("buffer is %d bytes", len(b))
			}
			got, err := parseHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.h
			want.DataSize, want.DataStart = uint32(len(b)), headerSize
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
			if !bytes.Equal(b[headerSize:headerSize+len(tt.data)], tt.data) {
				t.Errorf("data not at data_start")
			}
		})
	}
	for _, h := range []header{{Name: strings.Repeat("n", nameLen)}, {UUID: strings.Repeat("u", uuidLen)}} {
		if _, err := h.marshal(nil, 0); err == nil {
			t.Errorf("marshal accepted an over-long name or uuid")
		}
	}
}

// kernelStatusReply lays out a DM_TABLE_STATUS result the way the kernel's
// retrieve_status does: next counts from the start of the data area.
func kernelStatusReply(lines []TableLine) []byte {
	var out []byte
	for _, l := range lines {
		spec := make([]byte, specSize)
		ne.PutUint64(spec[0:], l.Start)
		ne.PutUint64(spec[8:], l.Length)
		copy(spec[24:], l.Type)
		spec = append(spec, l.Params...)
		spec = append(spec, 0)
		for len(spec)%8 != 0 {
			spec = append(spec, 0)
		}
		ne.PutUint32(spec[20:], uint32(len(out)+len(spec)))
		out = append(out, spec...)
	}
	return out
}

func TestTargets(t *testing.T) {
	lines := []TableLine{
		{Start: 0, Length: 8, Type: "linear", Params: "7:0 0"},
		{Start: 8, Length: 2048, Type: "verity", Params: "1 7:1 7:1 4096 4096 256 257 sha256 " + strings.Repeat("ab", 32) + " -"},
		{Start: 2056, Length: 1, Type: "zero"},
	}
	got, err := parseTargets(kernelStatusReply(lines), uint32(len(lines)))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(lines, got); diff != "" {
		t.Errorf("parseTargets (-want +got):\n%s", diff)
	}

	// DM_TABLE_LOAD's next is relative to the current spec instead.
	b, err := marshalTargets(lines)
	if err != nil {
		t.Fatal(err)
	}
	off := 0
	for i, l := range lines {
		s := b[off:]
		if got := ne.Uint64(s[8:]); got != l.Length {
			t.Errorf("spec %d length %d, want %d", i, got, l.Length)
		}
		if got := cstring(s[24:40]); got != l.Type {
			t.Errorf("spec %d type %q, want %q", i, got, l.Type)
		}
		if got := cstring(s[specSize:]); got != l.Params {
			t.Errorf("spec %d params %q, want %q", i, got, l.Params)
		}
		next := int(ne.Uint32(s[20:]))
		if next%8 != 0 || next < specSize+len(l.Params)+1 {
			t.Errorf("spec %d next %d: not aligned or overlaps the params", i, next)
		}
		off += next
	}
	if off != len(b) {
		t.Errorf("specs end at %d, buffer is %d", off, len(b))
	}

	for _, bad := range []TableLine{
		{Length: 1, Type: strings.Repeat("t", typeNameLen)},
		{Length: 1, Type: "linear", Params: "a\x00b"},
	} {
		if _, err := marshalTargets([]TableLine{bad}); err == nil {
			t.Errorf("marshalTargets(%+v) succeeded", bad)
		}
	}
}

func TestParseTargetsMalformed(t *testing.T) {
	good := kernelStatusReply([]TableLine{{Length: 1, Type: "zero"}, {Start: 1, Length: 1, Type: "zero"}})
	loop := bytes.Clone(good)
	ne.PutUint32(loop[20:], 0) // first spec points at itself
	tests := map[string]struct {
		data  []byte
		count uint32
	}{
		"count too large": {good, 1 << 30},
		"truncated":       {good[:specSize+3], 2},
		"next loops":      {loop, 2},
	}
	for name, tt := range tests {
		if _, err := parseTargets(tt.data, tt.count); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestParseNameList(t *testing.T) {
	rec := func(dev uint64, name string, last bool) []byte {
		b := make([]byte, nameListName)
		ne.PutUint64(b, dev)
		b = append(b, name...)
		b = append(b, 0)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		b = append(b, make([]byte, 8)...) // event_nr and flags, as since Linux 5.13
		if !last {
			ne.PutUint32(b[8:], uint32(len(b)))
		}
		return b
	}
	tests := []struct {
		name string
		data []byte
		want []Device
	}{
		{name: "none", data: make([]byte, 16)},
		{name: "two", data: append(rec(0xfd00, "root", false), rec(0xfd01, "run-crypt", true)...),
			want: []Device{{Name: "root", Dev: 0xfd00}, {Name: "run-crypt", Dev: 0xfd01}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseNameList(tt.data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
	bad := rec(1, "x", false)
	ne.PutUint32(bad[8:], 4)
	if _, err := parseNameList(bad); err == nil {
		t.Error("next smaller than a record header accepted")
	}
	if _, err := parseNameList(nil); err == nil {
		t.Error("empty reply accepted")
	}
}

func TestDev(t *testing.T) {
	tests := []struct {
		dev          Dev
		major, minor uint32
		s            string
	}{
		{0xfd00, 253, 0, "253:0"},
		{0x0701, 7, 1, "7:1"},
		{(300 & 0xff) | 8<<8 | (300&^0xff)<<12, 8, 300, "8:300"},
		{Dev(uint64(0x1000)<<32 | 0x103<<8), 0x1103, 0, "4355:0"},
	}
	for _, tt := range tests {
		if tt.dev.Major() != tt.major || tt.dev.Minor() != tt.minor || tt.dev.String() != tt.s {
			t.Errorf("Dev(%#x) = %d:%d %q, want %d:%d %q", uint64(tt.dev), tt.dev.Major(), tt.dev.Minor(), tt.dev, tt.major, tt.minor, tt.s)
		}
	}
}

func FuzzParseTargets(f *testing.F) {
	f.Add(kernelStatusReply([]TableLine{{Length: 8, Type: "verity", Params: "V"}, {Start: 8, Length: 1, Type: "zero"}}), uint32(2))
	f.Add([]byte{}, uint32(1))
	f.Fuzz(func(t *testing.T, data []byte, count uint32) {
		lines, err := parseTargets(data, count)
		if err == nil && len(lines) != int(count) {
			t.Fatalf("%d lines for count %d", len(lines), count)
		}
	})
}

func FuzzParseNameList(f *testing.F) {
	f.Add(make([]byte, 16))
	f.Add([]byte("\x00\xfd\x00\x00\x00\x00\x00\x00\x10\x00\x00\x00ab\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00c\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		devs, err := parseNameList(data)
		if err == nil && len(devs) > len(data)/nameListName+1 {
			t.Fatalf("%d devices from %d bytes", len(devs), len(data))
		}
	})
}

func FuzzParseHeader(f *testing.F) {
	b, _ := header{Version: abiVersion, Name: "root"}.marshal(nil, 0)
	f.Add(b)
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseHeader(data)
		if err != nil {
			return
		}
		if len(h.Name) >= nameLen || len(h.UUID) >= uuidLen {
			t.Fatalf("name %d bytes, uuid %d bytes", len(h.Name), len(h.UUID))
		}
	})
}
