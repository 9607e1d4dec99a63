package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/enclave-storage/enclave-storage/cms"
	"github.com/enclave-storage/enclave-storage/keys/kmstest"
	"github.com/enclave-storage/enclave-storage/nsm"
	"github.com/enclave-storage/enclave-storage/nsm/nsmtest"
	"github.com/enclave-storage/enclave-storage/parentcreds"
)

func unixDialer(path string) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}
}

// TestKMSThroughParent walks the enclave's path to KMS with the daemon in
// the middle (unix sockets standing in for vsock): credentials from
// --credentials, which the daemon took from the AWS environment, sign a
// GenerateDataKey sent through --forward to a fake KMS, TLS ending at the
// client, and the attested recipient gets the data key.
func TestKMSThroughParent(t *testing.T) {
	ca, err := nsmtest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := kmstest.NewServer(kmstest.Options{Roots: ca.Roots(), Region: "eu-west-1",
		AccessKeys: map[string]string{"AKIDPARENTROLE": "parent-secret"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// The daemon's AWS default chain finds these (and never asks IMDS).
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": "AKIDPARENTROLE", "AWS_SECRET_ACCESS_KEY": "parent-secret", "AWS_SESSION_TOKEN": "role-session",
		"AWS_REGION": "eu-west-1", "AWS_EC2_METADATA_DISABLED": "true", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": filepath.Join(dir, "none"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "none"),
	} {
		t.Setenv(k, v)
	}
	kmsSock, credSock := filepath.Join(dir, "kms.sock"), filepath.Join(dir, "creds.sock")
	d := start(t, dir, "--export", "run="+filepath.Join(dir, "run.img")+",size=1M",
		"--forward", "unix://"+kmsSock+"="+strings.TrimPrefix(srv.URL(), "https://"),
		"--credentials", "unix://"+credSock)

	// The enclave's side.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	creds := &parentcreds.Provider{Dial: unixDialer(credSock)}
	region, err := creds.Region(ctx)
	if err != nil || region != "eu-west-1" {
		t.Fatalf("Region = %q, %v", region, err)
	}
	dial := unixDialer(kmsSock)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: srv.RootCAs(), ServerName: srv.Host()},
		DialContext:     func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
	}
	client := kms.NewFromConfig(aws.Config{Region: region, Credentials: aws.NewCredentialsCache(creds), HTTPClient: &http.Client{Transport: tr}})

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	doc, err := (&nsmtest.Fake{CA: ca}).Attest(ctx, nsm.Request{PublicKey: spki})
	if err != nil {
		t.Fatal(err)
	}
	out, err := client.GenerateDataKey(ctx, &kms.GenerateDataKeyInput{
		KeyId: aws.String(srv.KeyARN()), KeySpec: types.DataKeySpecAes256,
		Recipient: &types.RecipientInfo{AttestationDocument: doc, KeyEncryptionAlgorithm: types.KeyEncryptionMechanismRsaesOaepSha256},
	})
	if err != nil {
		t.Fatalf("GenerateDataKey through the parent: %v", err)
	}
	if dk, err := cms.Decrypt(out.CiphertextForRecipient, key); err != nil || len(dk) != 32 {
		t.Fatalf("data key: %d bytes, %v", len(dk), err)
	}
	logs := d.logs.String()
	for _, want := range []string{"serves=\"forward to 127.0.0.1:", "source=EnvConfigCredentials", "credentials served"} {
		if !strings.Contains(logs, want) {
			t.Errorf("daemon log lacks %q:\n%s", want, logs)
		}
	}
}
