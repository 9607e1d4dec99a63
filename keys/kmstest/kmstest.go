package kmstest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Options configure a Server.
type Options struct {
	// Region names the endpoint, kms.REGION.amazonaws.com, that the TLS
	// certificate is issued for and that SigV4 scopes must name (default
	// us-east-1).
	Region string
	// KeyARN is the one KMS key (default a key in account 111122223333).
	KeyARN string
	// Roots verify recipients' attestation documents (required).
	Roots *x509.CertPool
	// RequiredPCRs is the key policy: PCR index → value the recipient's
	// document must hold. Empty: any request with valid SigV4 is allowed,
	// with or without a recipient.
	RequiredPCRs map[int][]byte
	// AccessKeys, when set, maps access key IDs to secret keys and makes
	// the server recompute SigV4 signatures; otherwise only their presence
	// and scope are checked.
	AccessKeys map[string]string
	// Now is the time attestation documents are verified at (default
	// time.Now).
	Now func() time.Time
	// Logger receives one line per request (default: discard).
	Logger *slog.Logger
}

// Server is a running fake KMS.
type Server struct {
	opts   Options
	keyID  string // the ARN's last part
	master cipher.AEAD
	caPEM  []byte
	roots  *x509.CertPool
	tls    *tls.Config
	http   *http.Server
	url    string
	log    *slog.Logger

	mu       sync.Mutex
	pcrs     map[int][]byte
	failures int
	wg       sync.WaitGroup
}

// NewServer starts a fake KMS on a loopback port with a TLS certificate,
// from a CA of its own, for kms.REGION.amazonaws.com, localhost and
// 127.0.0.1. Close stops it.
func NewServer(opts Options) (*Server, error) {
	if opts.Roots == nil {
		return nil, errors.New("kmstest: Options.Roots is required to verify attestation documents")
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if opts.KeyARN == "" {
		opts.KeyARN = "arn:aws:kms:" + opts.Region + ":111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	}
	keyID, err := keyIDOf(opts.KeyARN)
	if err != nil {
		return nil, err
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mk := make([]byte, 32)
	rand.Read(mk)
	block, _ := aes.NewCipher(mk)
	aead, _ := cipher.NewGCM(block)
	s := &Server{opts: opts, keyID: keyID, master: aead, log: log}
	s.SetRequiredPCRs(opts.RequiredPCRs)
	if err := s.issueCertificate(); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("kmstest: %w", err)
	}
	s.url = "https://" + l.Addr().String()
	s.http = &http.Server{Handler: http.HandlerFunc(s.handle), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.Serve(l)
	}()
	return s, nil
}

// keyIDOf returns the key ID of arn:aws:kms:REGION:ACCOUNT:key/ID.
func keyIDOf(arn string) (string, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[2] != "kms" || !strings.HasPrefix(parts[5], "key/") || len(parts[5]) == len("key/") {
		return "", fmt.Errorf("kmstest: %q is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)", arn)
	}
	return strings.TrimPrefix(parts[5], "key/"), nil
}

// issueCertificate makes the server's CA and TLS certificate.
func (s *Server) issueCertificate() error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kmstest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("kmstest: CA: %w", err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: s.Host()},
		DNSNames:     []string{s.Host(), "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("kmstest: certificate: %w", err)
	}
	s.roots = x509.NewCertPool()
	s.roots.AddCert(ca)
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	s.tls = &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{{Certificate: [][]byte{der, caDER}, PrivateKey: key}},
	}
	return nil
}

// Serve serves TLS on another listener too, e.g. a vsock or unix listener
// that a test forwards to, until Close; it returns nil after Close.
func (s *Server) Serve(l net.Listener) error {
	err := s.http.Serve(tls.NewListener(l, s.tls))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// URL is the loopback endpoint, https://127.0.0.1:PORT.
func (s *Server) URL() string { return s.url }

// Host is the name the certificate is issued for, kms.REGION.amazonaws.com,
// which clients reaching the server through a forwarder set as ServerName.
func (s *Server) Host() string { return "kms." + s.opts.Region + ".amazonaws.com" }

// KeyARN is the server's one key.
func (s *Server) KeyARN() string { return s.opts.KeyARN }

// RootCAs trusts the server's certificate.
func (s *Server) RootCAs() *x509.CertPool { return s.roots }

// RootPEM is the server's CA certificate in PEM, for clients in other
// processes (an enclave image's trust store).
func (s *Server) RootPEM() []byte { return append([]byte(nil), s.caPEM...) }

// SetRequiredPCRs replaces the key policy's PCR condition; nil or empty
// removes it.
func (s *Server) SetRequiredPCRs(pcrs map[int][]byte) {
	m := make(map[int][]byte, len(pcrs))
	for i, v := range pcrs {
		m[i] = append([]byte(nil), v...)
	}
	s.mu.Lock()
	s.pcrs = m
	s.mu.Unlock()
}

// SetFailures makes the next n requests fail with KMSInternalException
// (HTTP 500), as a KMS outage would; the SDK retries those.
func (s *Server) SetFailures(n int) {
	s.mu.Lock()
	s.failures = n
	s.mu.Unlock()
}

// Close stops the server and waits for its loopback listener's goroutine.
func (s *Server) Close() error {
	err := s.http.Close()
	s.wg.Wait()
	return err
}

// publicKey parses the RSA key of an attestation document (SPKI DER).
func publicKey(spki []byte) (*rsa.PublicKey, error) {
	if len(spki) == 0 {
		return nil, errors.New("the attestation document has no public key")
	}
	k, err := x509.ParsePKIXPublicKey(spki)
	if err != nil {
		return nil, fmt.Errorf("the attestation document's public key: %w", err)
	}
	rk, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the attestation document's public key is %T, not RSA", k)
	}
	return rk, nil
}
