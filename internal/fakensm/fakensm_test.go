package fakensm

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/nsm"
)

// TestAttester: documents from the fixed root verify against Roots and
// carry PCRs(), the request's key and nonce.
func TestAttester(t *testing.T) {
	a, err := Attester()
	if err != nil {
		t.Fatal(err)
	}
	req := nsm.Request{Nonce: []byte("nonce"), PublicKey: []byte("spki")}
	doc, err := a.Attest(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	d, err := nsm.Verify(doc, Roots(), time.Now())
	if err != nil {
		t.Fatalf("nsm.Verify: %v", err)
	}
	for n, v := range PCRs() {
		if !bytes.Equal(d.PCRs[n], v) {
			t.Errorf("PCR%d = %x, want %x", n, d.PCRs[n], v)
		}
	}
	if !bytes.Equal(d.Nonce, req.Nonce) || !bytes.Equal(d.PublicKey, req.PublicKey) {
		t.Errorf("document nonce %q key %q", d.Nonce, d.PublicKey)
	}
}
