//go:build integration && linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/crypt"
	"github.com/enclave-storage/enclave-storage/integration/itest"
	"github.com/enclave-storage/enclave-storage/internal/fakensm"
	"github.com/enclave-storage/enclave-storage/keys/kms"
	"github.com/enclave-storage/enclave-storage/keys/kmstest"
)

// The fake KMS key of the scenario.
const (
	kmsRegion = "eu-west-1"
	kmsARN    = "arn:aws:kms:eu-west-1:111122223333:key/e2e0e2e0-1111-4222-8333-944445555666"
	// vsock ports nbd-parent forwards to the fake KMS and serves
	// credentials on.
	kmsProxyPort = 8000
	kmsCredsPort = 8001
)

const (
	kmsFirstApp = `set -e
echo app-started
echo "sealed by KMS" > /var/kms-state
sync
echo kms-first-ok
`
	kmsSecondApp = `set -e
echo app-started
test "$(cat /var/kms-state)" = "sealed by KMS"
echo kms-second-ok
`
)

var unsealedLine = regexp.MustCompile(`msg="run volume key unsealed" uuid=\S+ unseal_ms=(\d+) open_ms=(\d+)`)

// TestKMS is issue 10's VM scenario: nbd-enclave built with the fakensm
// tag (a test NSM compiled in) gets its run volume key from a fake KMS
// hosted by this test on 127.0.0.1, reached through nbd-parent's vsock
// forwarder, with credentials from nbd-parent: the first launch formats
// with a KMS data key, the second reopens it, and a key policy that no
// longer matches the enclave's PCRs is refused with the run image
// unchanged.
func TestKMS(t *testing.T) {
	bin, err := exec.LookPath("nbd-enclave-fakensm")
	itest.Need(t, "nbd-enclave-fakensm (nbd-enclave built with -tags fakensm; -guest.cmds nbd-enclave+fakensm)", err)
	r := newRig(t)
	r.port = 21100
	r.run = filepath.Join(r.dir, "kms-run.img")

	srv, err := kmstest.NewServer(kmstest.Options{Region: kmsRegion, KeyARN: kmsARN, Roots: fakensm.Roots(), RequiredPCRs: fakensm.PCRs()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ca := filepath.Join(r.dir, "kms-ca.pem")
	write(t, ca, string(srv.RootPEM()))
	// nbd-parent's credentials come from the SDK's default chain; the
	// environment is its first source.
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDE2EEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "e2e-secret")
	t.Setenv("AWS_REGION", kmsRegion)
	parentFlags := []string{
		"--forward", fmt.Sprintf("vsock://:%d=%s", kmsProxyPort, strings.TrimPrefix(srv.URL(), "https://")),
		// Only the enclave's CID (1: loopback) gets the credentials.
		"--credentials", fmt.Sprintf("vsock://:%d?cid=1", kmsCredsPort),
	}
	l := launch{bin: bin, keySpec: fmt.Sprintf("kms:%s,cid=1,port=%d,credentials-port=%d,ca=%s", kmsARN, kmsProxyPort, kmsCredsPort, ca)}

	if !scenario(t, "g-kms-first-launch", func(t *testing.T) {
		p := r.parent(t, r.img, parentFlags...)
		defer p.stop(t)
		e, _ := r.enclave(t, l, kmsFirstApp)
		if rc := e.wait(t, 4*time.Minute); rc != 0 {
			t.Fatalf("nbd-enclave exited %d:\n%s", rc, e.out.String())
		}
		contains(t, e, "kms-first-ok", "state=blank", `msg="run volume key sealed"`)
		t.Logf("nbd-enclave:\n%s", e.out.String())
		f, err := os.Open(r.run)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		info, err := crypt.ReadInfo(context.Background(), f)
		if err != nil {
			t.Fatalf("the run image holds no LUKS2 header: %v", err)
		}
		if len(info.Tokens) != 1 || info.Tokens[0].Type != kms.TokenType {
			t.Fatalf("LUKS2 tokens %+v, want one %s", info.Tokens, kms.TokenType)
		}
		fmt.Printf("KMS token %d: type %s keyslots %v key_arn %s\n", 0, info.Tokens[0].Type, info.Tokens[0].Keyslots, info.Tokens[0].Fields["key_arn"])
	}) {
		t.Fatal("the other KMS scenarios need the first launch")
	}

	var unsealMS, openMS string
	scenario(t, "g-kms-second-launch", func(t *testing.T) {
		p := r.parent(t, r.img, parentFlags...)
		defer p.stop(t)
		e, _ := r.enclave(t, l, kmsSecondApp)
		if rc := e.wait(t, 4*time.Minute); rc != 0 {
			t.Fatalf("nbd-enclave exited %d:\n%s", rc, e.out.String())
		}
		contains(t, e, "kms-second-ok", "state=LUKS")
		if m := unsealedLine.FindStringSubmatch(e.out.String()); m != nil {
			unsealMS, openMS = m[1], m[2]
		} else {
			t.Errorf("no unseal timing in the output:\n%s", e.out.String())
		}
		logSteps(e.out.String())
	})

	scenario(t, "g-kms-pcr-changed", func(t *testing.T) {
		changed := fakensm.PCRs()
		changed[0] = bytes.Repeat([]byte{0xee}, len(changed[0]))
		srv.SetRequiredPCRs(changed)
		defer srv.SetRequiredPCRs(fakensm.PCRs())
		before := fileSum(t, r.run)
		p := r.parent(t, r.img, parentFlags...)
		e, _ := r.enclave(t, l, "echo app-started")
		rc := e.wait(t, 4*time.Minute)
		p.stop(t)
		t.Logf("nbd-enclave:\n%s", e.out.String())
		if rc == 0 {
			t.Fatal("nbd-enclave ran although KMS refused the key")
		}
		contains(t, e, "KMS refused to release the key", kmsARN, "PCR0=")
		if appStarted.MatchString(e.out.String()) {
			t.Error("the application ran")
		}
		if fileSum(t, r.run) != before {
			t.Error("a refused unlock changed the run image")
		}
	})

	// Unlock cost of the keyslot, key in hand to volume open, in this
	// VM: the machine-key PBKDF2 enrollment against the argon2id default.
	pbkdf2MS := openTime(t, crypt.MachineKeyKDF())
	argonMS := openTime(t, crypt.DefaultKDF())
	fmt.Printf("E2E-KMS-TIMING unseal_ms=%s enclave_open_ms=%s pbkdf2_open_ms=%d argon2id_open_ms=%d\n", unsealMS, openMS, pbkdf2MS, argonMS)
}

// openTime formats a scratch volume with a 32-byte machine key enrolled
// with kdf and returns how long crypt.Open takes, in ms.
func openTime(t *testing.T, kdf crypt.KDF) int64 {
	t.Helper()
	ctx := context.Background()
	f, err := os.Create(filepath.Join(t.TempDir(), "kdf.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(32 << 20); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, kms.KeySize)
	rand.Read(key)
	if _, err := crypt.Format(ctx, f, key, &crypt.FormatOptions{KDF: kdf}); err != nil {
		t.Fatalf("crypt.Format with %+v: %v", kdf, err)
	}
	t0 := time.Now()
	v, err := crypt.Open(ctx, f, key)
	d := time.Since(t0)
	if err != nil {
		t.Fatalf("crypt.Open: %v", err)
	}
	v.Zero()
	return d.Milliseconds()
}
