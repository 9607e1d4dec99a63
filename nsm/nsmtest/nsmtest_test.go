package nsmtest_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/internal/nitrovec"
	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/enclave-storage/enclave-storage/nsm/nsmtest"
)

func TestRootPEM(t *testing.T) {
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(ca.RootPEM())
	if b == nil || b.Type != "CERTIFICATE" || len(rest) != 0 {
		t.Fatalf("RootPEM is not one certificate")
	}
	root, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	// A pool built from the PEM verifies the fake's documents.
	pool := x509.NewCertPool()
	pool.AddCert(root)
	f := &nsmtest.Fake{CA: ca}
	doc, err := f.Attest(context.Background(), nsm.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nsm.Verify(doc, pool, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func TestFakeRefuses(t *testing.T) {
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	f := &nsmtest.Fake{CA: ca}
	if _, err := f.Attest(context.Background(), nsm.Request{Nonce: make([]byte, nsm.MaxUserData+1)}); err == nil {
		t.Error("oversized nonce accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.Attest(ctx, nsm.Request{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Attest with a cancelled context: %v", err)
	}
	if _, err := (&nsmtest.Fake{}).Attest(context.Background(), nsm.Request{}); err == nil {
		t.Error("Fake without a CA attested")
	}
}

// writeChain writes a document's leaf, intermediates and root as PEM files
// for openssl verify.
func writeChain(t *testing.T, d *nsm.Document) (leaf, untrusted, root string) {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, ders ...[]byte) string {
		var b []byte
		for _, der := range ders {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("leaf.pem", d.Certificate), write("untrusted.pem", d.CABundle[1:]...), write("root.pem", d.CABundle[0])
}

func opensslVerify(t *testing.T, d *nsm.Document, at time.Time) error {
	t.Helper()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	leaf, untrusted, root := writeChain(t, d)
	out, err := exec.Command(openssl, "verify", "-attime", fmt.Sprint(at.Unix()),
		"-CAfile", root, "-untrusted", untrusted, leaf).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%v: %s", err, out)
	}
	return nil
}

// TestChainShapeOpenSSL: OpenSSL accepts the fake's chain at the document's
// time, as it accepts the real document's, and refuses both three hours and
// a minute later (the leaf's lifetime, as AWS issues it).
func TestChainShapeOpenSSL(t *testing.T) {
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	doc, err := (&nsmtest.Fake{CA: ca, Now: func() time.Time { return now }}).Attest(context.Background(), nsm.Request{})
	if err != nil {
		t.Fatal(err)
	}
	fake, err := nsm.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	docs := map[string]*nsm.Document{"fake": fake}
	if v := nitrovec.Seed(t, "attestation-doc.b64"); v != nil {
		real, err := nsm.Parse(v)
		if err != nil {
			t.Fatal(err)
		}
		docs["real"] = real
	} else {
		t.Log("real Nitro vectors absent: checking the fake's chain only")
	}
	for name, d := range docs {
		if err := opensslVerify(t, d, d.Timestamp); err != nil {
			t.Errorf("%s: openssl verify at the document's time: %v", name, err)
		}
		if err := opensslVerify(t, d, d.Timestamp.Add(3*time.Hour+time.Minute)); err == nil {
			t.Errorf("%s: openssl verify accepted the chain after the leaf expired", name)
		}
	}
}

// TestCAPEMRoundTrip: a CA read back from PEM (as a test-only binary in
// another process would) signs documents the original CA's roots accept.
func TestCAPEMRoundTrip(t *testing.T) {
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	b, err := ca.PEM()
	if err != nil {
		t.Fatal(err)
	}
	back, err := nsmtest.ParseCA(b)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := (&nsmtest.Fake{CA: back}).Attest(context.Background(), nsm.Request{Nonce: []byte("n")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nsm.Verify(doc, ca.Roots(), time.Now()); err != nil {
		t.Fatalf("Verify with the original roots: %v", err)
	}
	other, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	ob, _ := other.PEM()
	// Certificates of one CA with the key of another are refused.
	mixed := append(bytes.Clone(b[:bytes.Index(b, []byte("-----BEGIN PRIVATE KEY"))]), ob[bytes.Index(ob, []byte("-----BEGIN PRIVATE KEY")):]...)
	if _, err := nsmtest.ParseCA(mixed); err == nil {
		t.Fatal("ParseCA accepted another CA's key")
	}
	if _, err := nsmtest.ParseCA(ca.RootPEM()); err == nil {
		t.Fatal("ParseCA accepted a root alone")
	}
}

// TestExpiredIntermediate: a leaf valid at the time of verification does
// not help when its intermediate (30 days, like AWS's regional ones) has
// expired.
func TestExpiredIntermediate(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := nsmtest.NewCAAt(t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   time.Time
		want bool
	}{{t0, true}, {t0.Add(28 * 24 * time.Hour), true}, {t0.Add(30 * 24 * time.Hour), false}} {
		doc, err := (&nsmtest.Fake{CA: ca, Now: func() time.Time { return c.at }}).Attest(context.Background(), nsm.Request{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = nsm.Verify(doc, ca.Roots(), c.at)
		if c.want && err != nil {
			t.Errorf("at %v: %v", c.at, err)
		}
		if !c.want && !errors.Is(err, nsm.ErrCertificate) {
			t.Errorf("at %v: %v, want ErrCertificate", c.at, err)
		}
	}
}
