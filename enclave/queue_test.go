package enclave

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/enclave-storage/enclave-storage/nbdclient"
)

func TestExportQueueLimits(t *testing.T) {
	tests := []struct {
		name     string
		max      uint32 // NBD_INFO_BLOCK_SIZE maximum; 0: not sent
		writable bool
		want     QueueLimits
	}{
		{"no block sizes, image", 0, false, QueueLimits{MaxSectorsKB: maxRequestKB, ReadAheadKB: imageReadAheadKB}},
		{"no block sizes, run", 0, true, QueueLimits{MaxSectorsKB: maxRequestKB}},
		{"nbd-parent's 32 MiB", 32 << 20, true, QueueLimits{MaxSectorsKB: maxRequestKB}},
		{"exactly 1 MiB", 1 << 20, false, QueueLimits{MaxSectorsKB: 1024, ReadAheadKB: imageReadAheadKB}},
		{"server caps at 256 KiB", 256 << 10, true, QueueLimits{MaxSectorsKB: 256}},
		{"unaligned maximum rounds down to 4 KiB", 65536 + 3*1024 + 7, true, QueueLimits{MaxSectorsKB: 64}},
		{"maximum below a page is left alone", 2048, true, QueueLimits{}},
		{"4 GiB - 1", 1<<32 - 1, false, QueueLimits{MaxSectorsKB: maxRequestKB, ReadAheadKB: imageReadAheadKB}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp := &nbdclient.Export{BlockSize: nbdclient.BlockSize{Minimum: 1, Preferred: 4096, Maximum: tt.max}}
			if got := exportQueueLimits(exp, tt.writable); got != tt.want {
				t.Errorf("exportQueueLimits(max %d, writable %v) = %+v, want %+v", tt.max, tt.writable, got, tt.want)
			}
		})
	}
}

// fakeQueue makes a stand-in for /sys/block/nbdN/queue with the given
// attribute files (name → content; a missing name is no file).
func fakeQueue(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestTuneQueueDir(t *testing.T) {
	kernel := map[string]string{"max_hw_sectors_kb": "32768\n", "max_sectors_kb": "128\n", "read_ahead_kb": "128\n"}
	tests := []struct {
		name    string
		files   map[string]string
		want    QueueLimits
		got     QueueLimits
		written map[string]string // file contents afterwards
		errIs   error
	}{
		{
			name: "both set", files: kernel, want: QueueLimits{MaxSectorsKB: 1024, ReadAheadKB: 1024},
			got:     QueueLimits{MaxSectorsKB: 1024, ReadAheadKB: 1024},
			written: map[string]string{"max_sectors_kb": "1024", "read_ahead_kb": "1024", "max_hw_sectors_kb": "32768\n"},
		},
		{
			name: "zero leaves read-ahead", files: kernel, want: QueueLimits{MaxSectorsKB: 1024},
			got:     QueueLimits{MaxSectorsKB: 1024, ReadAheadKB: 128},
			written: map[string]string{"max_sectors_kb": "1024", "read_ahead_kb": "128\n"},
		},
		{
			name: "nothing wanted", files: kernel, want: QueueLimits{},
			got:     QueueLimits{MaxSectorsKB: 128, ReadAheadKB: 128},
			written: kernel,
		},
		{
			name:  "capped at the hardware limit",
			files: map[string]string{"max_hw_sectors_kb": "512\n", "max_sectors_kb": "128\n", "read_ahead_kb": "128\n"},
			want:  QueueLimits{MaxSectorsKB: 1024}, got: QueueLimits{MaxSectorsKB: 512, ReadAheadKB: 128},
			written: map[string]string{"max_sectors_kb": "512"},
		},
		{
			name:  "lowered to what the server takes",
			files: map[string]string{"max_hw_sectors_kb": "32768", "max_sectors_kb": "1280", "read_ahead_kb": "128"},
			want:  QueueLimits{MaxSectorsKB: 64}, got: QueueLimits{MaxSectorsKB: 64, ReadAheadKB: 128},
			written: map[string]string{"max_sectors_kb": "64"},
		},
		{
			// An older kernel, or a device without the attribute: the
			// other setting is still made, the error reports the missing one.
			name:  "no read_ahead_kb",
			files: map[string]string{"max_hw_sectors_kb": "32768", "max_sectors_kb": "128"},
			want:  QueueLimits{MaxSectorsKB: 1024, ReadAheadKB: 1024}, got: QueueLimits{MaxSectorsKB: 1024},
			written: map[string]string{"max_sectors_kb": "1024"},
			errIs:   fs.ErrNotExist,
		},
		{
			name:  "no max_hw_sectors_kb: wanted value written uncapped",
			files: map[string]string{"max_sectors_kb": "128", "read_ahead_kb": "128"},
			want:  QueueLimits{MaxSectorsKB: 1024}, got: QueueLimits{MaxSectorsKB: 1024, ReadAheadKB: 128},
			written: map[string]string{"max_sectors_kb": "1024"},
			errIs:   fs.ErrNotExist,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fakeQueue(t, tt.files)
			got, err := tuneQueueDir(dir, tt.want)
			if tt.errIs == nil && err != nil || tt.errIs != nil && !errors.Is(err, tt.errIs) {
				t.Errorf("tuneQueueDir error = %v, want %v", err, tt.errIs)
			}
			if got != tt.got {
				t.Errorf("tuneQueueDir = %+v, want %+v", got, tt.got)
			}
			for name, want := range tt.written {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil || string(b) != want {
					t.Errorf("%s holds %q (%v), want %q", name, b, err, want)
				}
			}
			if _, err := os.Stat(filepath.Join(dir, "read_ahead_kb")); tt.files["read_ahead_kb"] == "" && err == nil {
				t.Error("tuneQueueDir created read_ahead_kb; sysfs attributes are never created")
			}
		})
	}
}

func TestTuneQueueDirRejectsGarbage(t *testing.T) {
	dir := fakeQueue(t, map[string]string{"max_hw_sectors_kb": "lots", "max_sectors_kb": "128", "read_ahead_kb": "128"})
	got, err := tuneQueueDir(dir, QueueLimits{MaxSectorsKB: 1024})
	if err == nil || !strings.Contains(err.Error(), "max_hw_sectors_kb") {
		t.Errorf("error = %v, want one naming max_hw_sectors_kb", err)
	}
	// Unparsable hardware limit: the wanted value is still written (the
	// kernel itself refuses values above its limit).
	if got.MaxSectorsKB != 1024 {
		t.Errorf("max_sectors_kb = %d, want 1024", got.MaxSectorsKB)
	}
}
