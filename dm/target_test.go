package dm

import (
	"bytes"
	"strings"
	"testing"
)

func TestTableLines(t *testing.T) {
	root := bytes.Repeat([]byte{0xab}, 32)
	salt := []byte{0x01, 0x02, 0xff}
	key := bytes.Repeat([]byte{0x11}, 64)
	hexRoot, hexKey := strings.Repeat("ab", 32), strings.Repeat("11", 64)
	tests := []struct {
		name   string
		target Target
		want   TableLine
	}{
		{
			name:   "linear",
			target: LinearTarget{Start: 8, Length: 100, Device: "/dev/loop0", Offset: 2048},
			want:   TableLine{Start: 8, Length: 100, Type: "linear", Params: "/dev/loop0 2048"},
		},
		{
			name: "verity defaults (what veritysetup format writes)",
			target: VerityTarget{DataDevice: "/dev/nbd0", HashDevice: "/dev/nbd0", DataBlocks: 256,
				HashStartBlock: 256, RootHash: root, Salt: salt},
			want: TableLine{Length: 2048, Type: "verity",
				Params: "1 /dev/nbd0 /dev/nbd0 4096 4096 256 256 sha256 " + hexRoot + " 0102ff"},
		},
		{
			name: "verity legacy, no salt, options",
			target: VerityTarget{LegacyFormat: true, DataDevice: "7:0", HashDevice: "7:1", DataBlockSize: 512,
				HashBlockSize: 1024, DataBlocks: 3, Algorithm: "sha1", RootHash: root[:20],
				OnCorruption: CorruptionRestart, IgnoreZeroBlocks: true, CheckAtMostOnce: true},
			want: TableLine{Length: 3, Type: "verity",
				Params: "0 7:0 7:1 512 1024 3 0 sha1 " + hexRoot[:40] + " - 3 restart_on_corruption ignore_zero_blocks check_at_most_once"},
		},
		{
			name:   "verity panic",
			target: VerityTarget{DataDevice: "a", HashDevice: "b", DataBlocks: 1, RootHash: root, OnCorruption: CorruptionPanic},
			want:   TableLine{Length: 8, Type: "verity", Params: "1 a b 4096 4096 1 0 sha256 " + hexRoot + " - 1 panic_on_corruption"},
		},
		{
			name:   "crypt plain",
			target: CryptTarget{Length: 4096, Cipher: "aes-xts-plain64", Key: key, Device: "/dev/loop1"},
			want:   TableLine{Length: 4096, Type: "crypt", Params: "aes-xts-plain64 " + hexKey + " 0 /dev/loop1 0"},
		},
		{
			name: "crypt LUKS2-like",
			target: CryptTarget{Start: 0, Length: 4096, Cipher: "aes-xts-plain64", Key: key, IVOffset: 0, Device: "254:3",
				Offset: 32768, SectorSize: 4096, IVLargeSectors: true, AllowDiscards: true, NoReadWorkqueue: true, NoWriteWorkqueue: true},
			want: TableLine{Length: 4096, Type: "crypt",
				Params: "aes-xts-plain64 " + hexKey + " 0 254:3 32768 5 allow_discards no_read_workqueue no_write_workqueue sector_size:4096 iv_large_sectors"},
		},
		{
			name:   "raw line",
			target: TableLine{Length: 16, Type: "zero"},
			want:   TableLine{Length: 16, Type: "zero"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.target.TableLine()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestTableLineErrors(t *testing.T) {
	root := make([]byte, 32)
	good := VerityTarget{DataDevice: "a", HashDevice: "b", DataBlocks: 1, RootHash: root}
	tests := map[string]Target{
		"linear no device":      LinearTarget{Length: 1},
		"linear zero length":    LinearTarget{Device: "/dev/loop0"},
		"device with space":     LinearTarget{Length: 1, Device: "/dev/a b"},
		"verity short root":     func() Target { v := good; v.RootHash = root[:31]; return v }(),
		"verity no root":        func() Target { v := good; v.Algorithm = "blake2b-256"; v.RootHash = nil; return v }(),
		"verity odd block size": func() Target { v := good; v.DataBlockSize = 1000; return v }(),
		"verity small block":    func() Target { v := good; v.HashBlockSize = 256; return v }(),
		"verity no blocks":      func() Target { v := good; v.DataBlocks = 0; return v }(),
		"verity bad mode":       func() Target { v := good; v.OnCorruption = 9; return v }(),
		"verity no hash dev":    func() Target { v := good; v.HashDevice = ""; return v }(),
		"crypt no cipher":       CryptTarget{Length: 8, Device: "a"},
		"crypt sector size":     CryptTarget{Length: 8, Cipher: "aes-xts-plain64", Device: "a", SectorSize: 8192},
		"crypt unaligned":       CryptTarget{Length: 9, Cipher: "aes-xts-plain64", Device: "a", SectorSize: 4096},
		"raw type with space":   TableLine{Length: 1, Type: "a b"},
	}
	for name, target := range tests {
		if l, err := target.TableLine(); err == nil {
			t.Errorf("%s: rendered %+v, want an error", name, l)
		}
	}
}

func TestRenderTable(t *testing.T) {
	zero := func(start, n uint64) Target { return TableLine{Start: start, Length: n, Type: "zero"} }
	tests := []struct {
		name    string
		targets []Target
		ok      bool
	}{
		{"one", []Target{zero(0, 8)}, true},
		{"contiguous", []Target{zero(0, 8), zero(8, 8)}, true},
		{"none", nil, false},
		{"not from zero", []Target{zero(1, 8)}, false},
		{"gap", []Target{zero(0, 8), zero(9, 8)}, false},
		{"overlap", []Target{zero(0, 8), zero(4, 8)}, false},
	}
	for _, tt := range tests {
		_, err := renderTable(tt.targets)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
