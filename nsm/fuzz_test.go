package nsm_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/internal/nitrovec"
	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/enclave-storage/enclave-storage/nsm/nsmtest"
)

// fuzzSeeds returns a fake document (with its CA and time) and, when the
// shared vectors are present, the real one.
func fuzzSeeds(f *testing.F) (*nsmtest.CA, time.Time, [][]byte) {
	ca, err := nsmtest.NewCA()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Now()
	fake := &nsmtest.Fake{CA: ca, Now: func() time.Time { return now }}
	var seeds [][]byte
	for _, r := range []nsm.Request{{}, {PublicKey: []byte("spki"), UserData: []byte{}, Nonce: []byte("n")}} {
		doc, err := fake.Attest(context.Background(), r)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, doc)
	}
	if real := nitrovec.Seed(f, "attestation-doc.b64"); real != nil {
		seeds = append(seeds, real)
	}
	return ca, now, seeds
}

// FuzzParse: Parse never panics, fails only with ErrMalformed, and what it
// accepts is within the documented limits.
func FuzzParse(f *testing.F) {
	_, _, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := nsm.Parse(b)
		if err != nil {
			if !errors.Is(err, nsm.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if d.ModuleID == "" || d.Digest != "SHA384" || len(d.PCRs) == 0 || len(d.PCRs) > 32 ||
			len(d.CABundle) == 0 || len(d.Certificate) == 0 || d.Timestamp.IsZero() ||
			len(d.PublicKey) > nsm.MaxUserData || len(d.UserData) > nsm.MaxUserData || len(d.Nonce) > nsm.MaxUserData {
			t.Fatalf("accepted out-of-limits document %+v", d)
		}
		for i, p := range d.PCRs {
			if i < 0 || i >= 32 || (len(p) != 32 && len(p) != 48 && len(p) != 64) {
				t.Fatalf("accepted PCR%d of %d bytes", i, len(p))
			}
		}
	})
}

// FuzzVerify: Verify never panics, fails only with its sentinels, and what
// it accepts Parse reads the same.
func FuzzVerify(f *testing.F) {
	ca, now, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	roots := ca.Roots()
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := nsm.Verify(b, roots, now)
		if err != nil {
			if !errors.Is(err, nsm.ErrMalformed) && !errors.Is(err, nsm.ErrCertificate) && !errors.Is(err, nsm.ErrSignature) {
				t.Fatalf("error %v is not a sentinel", err)
			}
			return
		}
		p, err := nsm.Parse(b)
		if err != nil || !reflect.DeepEqual(p, d) {
			t.Fatalf("Verify accepted what Parse reads as %+v, %v", p, err)
		}
	})
}
