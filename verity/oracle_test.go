package verity

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// These tests use veritysetup (Debian's cryptsetup-bin) as the oracle:
// its trees must verify with ours and ours with it, and both must reject
// the same corruption. They skip only where veritysetup is absent.

func veritysetup(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("veritysetup")
	if err != nil {
		t.Skip("veritysetup not installed (apt-get install cryptsetup-bin); oracle test skipped")
	}
	return path
}

func runVS(t *testing.T, vs string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command(vs, args...).CombinedOutput()
	return string(out), err
}

var rootHashRE = regexp.MustCompile(`(?m)^Root hash:\s+([0-9a-f]+)$`)

type oracleCase struct {
	name     string
	alg      string
	dbs, hbs uint32
	blocks   uint64
}

// oracleCases covers the sizes the issue names (1 block, 1 MiB, an odd
// count that leaves every level's last block partial, 64 MiB) for each
// algorithm and block-size setting.
func oracleCases(t *testing.T) []oracleCase {
	var cases []oracleCase
	for _, alg := range []string{"sha256", "sha1", "sha512"} {
		for _, bs := range [][2]uint32{{4096, 4096}, {512, 1024}} {
			g, err := newGeometry(&Params{HashType: 1, Algorithm: alg, DataBlockSize: bs[0], HashBlockSize: bs[1], DataBlocks: 1})
			if err != nil {
				t.Fatal(err)
			}
			per := g.perBlock
			sizes := map[string]uint64{
				"1block":  1,
				"1MiB":    (1 << 20) / uint64(bs[0]),
				"partial": per*per + per + 1, // three levels, each ending in a partial block
			}
			if alg == "sha256" {
				sizes["64MiB"] = (64 << 20) / uint64(bs[0])
			}
			for name, n := range sizes {
				cases = append(cases, oracleCase{fmt.Sprintf("%s/%d-%d/%s", alg, bs[0], bs[1], name), alg, bs[0], bs[1], n})
			}
		}
	}
	return cases
}

// TestOracleOursAcceptedByVeritysetup: (a) a tree verity writes is accepted
// by "veritysetup verify" with the root hash verity returned, and (c) one
// flipped byte in a data or hash block makes both verifiers fail.
func TestOracleOursAcceptedByVeritysetup(t *testing.T) {
	vs := veritysetup(t)
	for i, tc := range oracleCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			data := filepath.Join(dir, "data.img")
			hash := filepath.Join(dir, "hash.img")
			writeRandom(t, data, uint64(i), tc.blocks*uint64(tc.dbs))
			p, err := FormatFile(context.Background(), data, hash, Options{Algorithm: tc.alg, DataBlockSize: tc.dbs, HashBlockSize: tc.hbs})
			if err != nil {
				t.Fatal(err)
			}
			root := hex.EncodeToString(p.RootHash)
			if out, err := runVS(t, vs, "verify", data, hash, root); err != nil {
				t.Fatalf("veritysetup verify rejects our tree: %v\n%s", err, out)
			}
			dump, err := runVS(t, vs, "dump", hash)
			if err != nil || !strings.Contains(dump, "UUID:            \t"+p.UUID) || !strings.Contains(dump, "Salt:            \t"+p.Salt.String()) {
				t.Fatalf("veritysetup dump: %v\n%s", err, dump)
			}
			// (c) corruption: the middle data block, then each tree level's last block.
			flipAndCheck(t, vs, data, data, hash, p, DataArea, tc.blocks/2, uint64(tc.dbs), root)
			g, _ := newGeometry(p)
			for lvl := range g.levels {
				blk := g.levelStart[lvl] + g.levelSize[lvl] - 1
				flipAndCheck(t, vs, hash, data, hash, p, HashArea, blk, uint64(tc.hbs), root)
			}
		})
	}
}

// flipAndCheck flips one byte of block blk in file, checks that both
// veritysetup and Verify reject the image and that ours names the block,
// then flips it back.
func flipAndCheck(t *testing.T, vs, file, data, hash string, p *Params, area Area, blk, bs uint64, root string) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	off := int64(blk*bs + bs/3)
	flip := func() {
		b := []byte{0}
		f.ReadAt(b, off)
		b[0] ^= 0x80
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
	}
	flip()
	defer flip()
	if out, err := runVS(t, vs, "verify", data, hash, root); err == nil {
		t.Errorf("veritysetup accepts %s block %d flipped:\n%s", area, blk, out)
	}
	_, err = VerifyFile(context.Background(), data, hash, p.HashOffset, p.RootHash, nil)
	var ce *CorruptionError
	if !errors.As(err, &ce) || ce.Area != area || ce.Block != blk {
		t.Errorf("%s block %d flipped: Verify says %v", area, blk, err)
	}
}

// TestOracleVeritysetupAcceptedByUs: (b) trees veritysetup writes (with
// and without superblock, separate file and --hash-offset) verify with
// ours, and ours computes the same root hash and the same bytes for the
// same data, salt and UUID.
func TestOracleVeritysetupAcceptedByUs(t *testing.T) {
	vs := veritysetup(t)
	layouts := []struct {
		name     string
		appended bool
		noSB     bool
	}{
		{"separate", false, false},
		{"separate-nosb", false, true},
		{"offset", true, false},
		{"offset-nosb", true, true},
	}
	for i, tc := range oracleCases(t) {
		for _, lay := range layouts {
			t.Run(tc.name+"/"+lay.name, func(t *testing.T) {
				t.Parallel()
				dir := t.TempDir()
				size := tc.blocks * uint64(tc.dbs)
				data := filepath.Join(dir, "data.img")
				writeRandom(t, data, uint64(100+i), size)
				hash := filepath.Join(dir, "hash.img")
				salt := fmt.Sprintf("%064x", i+1)[:2*(8+i%20)]
				uuid := fmt.Sprintf("%08x-1111-4222-8333-444455556666", i)
				args := []string{"format", data, hash, "--hash", tc.alg, "--data-block-size", fmt.Sprint(tc.dbs),
					"--hash-block-size", fmt.Sprint(tc.hbs), "--salt", salt}
				var offset uint64
				if lay.appended {
					// Round the offset up to a hash block so it is valid with or without a superblock.
					offset = (size + uint64(tc.hbs) - 1) / uint64(tc.hbs) * uint64(tc.hbs)
					hash = data
					args[2] = data
					args = append(args, "--hash-offset", fmt.Sprint(offset), "--data-blocks", fmt.Sprint(tc.blocks))
				}
				if lay.noSB {
					args = append(args, "--no-superblock")
				} else {
					args = append(args, "--uuid", uuid)
				}
				out, err := runVS(t, vs, args...)
				if err != nil {
					t.Fatalf("veritysetup %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				m := rootHashRE.FindStringSubmatch(out)
				if m == nil {
					t.Fatalf("no root hash in veritysetup output:\n%s", out)
				}
				root, _ := hex.DecodeString(m[1])
				saltBytes, _ := hex.DecodeString(salt)
				var given *Params
				if lay.noSB {
					given = &Params{HashType: 1, Algorithm: tc.alg, DataBlockSize: tc.dbs, HashBlockSize: tc.hbs, DataBlocks: tc.blocks, Salt: saltBytes}
				}
				if _, err := VerifyFile(context.Background(), data, hash, offset, root, given); err != nil {
					t.Fatalf("Verify rejects veritysetup's tree: %v", err)
				}
				// Same data, salt, UUID and layout: same root hash, same bytes.
				ours := filepath.Join(dir, "ours.img")
				opts := Options{Algorithm: tc.alg, DataBlockSize: tc.dbs, HashBlockSize: tc.hbs, Salt: saltBytes,
					UUID: uuid, NoSuperblock: lay.noSB, HashOffset: offset, DataBlocks: tc.blocks}
				p, err := FormatFile(context.Background(), data, ours, opts)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(p.RootHash, root) {
					t.Fatalf("root hash %x, veritysetup printed %x", p.RootHash, root)
				}
				theirs, _ := os.ReadFile(hash)
				mine, _ := os.ReadFile(ours)
				if p.HashDeviceSize == offset {
					return // one data block and no superblock: nothing on the hash device
				}
				if uint64(len(mine)) != p.HashDeviceSize || uint64(len(theirs)) < p.HashDeviceSize || !bytes.Equal(theirs[offset:p.HashDeviceSize], mine[offset:p.HashDeviceSize]) {
					t.Fatalf("hash area differs from veritysetup's (%d vs %d bytes)", len(theirs), len(mine))
				}
			})
		}
	}
}

func writeRandom(t *testing.T, path string, seed, size uint64) {
	t.Helper()
	if err := os.WriteFile(path, randomData(seed, int(size)), 0o644); err != nil {
		t.Fatal(err)
	}
}
