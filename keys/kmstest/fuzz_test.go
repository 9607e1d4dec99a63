package kmstest

import (
	"bytes"
	"crypto/x509"
	"testing"
)

// FuzzOpenBlob: the blob parser takes whatever a client sends; it must
// never panic and never open anything it did not seal.
func FuzzOpenBlob(f *testing.F) {
	s, err := NewServer(Options{Roots: x509.NewCertPool()})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	ec := map[string]string{"export": "run"}
	sealed := s.seal([]byte("data key"), ec)
	f.Add(sealed)
	f.Add(sealed[:3])
	f.Add([]byte{blobVersion, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, blob []byte) {
		if _, err := blobKey(blob); err != nil {
			return
		}
		pt, err := s.open(blob, ec)
		if err == nil && (!bytes.Equal(blob, sealed) || string(pt) != "data key") {
			t.Fatalf("opened a blob it did not seal: %x", blob)
		}
	})
}
