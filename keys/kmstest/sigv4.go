package kmstest

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const amzDate = "20060102T150405Z"

// checkSigV4 checks a request's AWS Signature Version 4: present, scoped
// to this region and kms, and, with Options.AccessKeys, correct.
func (s *Server) checkSigV4(r *http.Request, body []byte) error {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return errorf(http.StatusBadRequest, "MissingAuthenticationTokenException", "Missing Authentication Token")
	}
	bad := func(why string) error {
		return errorf(http.StatusBadRequest, "IncompleteSignatureException", "Authorization header: %s", why)
	}
	alg, rest, ok := strings.Cut(auth, " ")
	if !ok || alg != "AWS4-HMAC-SHA256" {
		return bad("not AWS4-HMAC-SHA256")
	}
	fields := map[string]string{}
	for _, f := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	cred, signed, sig := fields["Credential"], fields["SignedHeaders"], fields["Signature"]
	scope := strings.Split(cred, "/") // AKID/DATE/REGION/kms/aws4_request
	if len(scope) != 5 || scope[0] == "" || signed == "" || sig == "" || scope[4] != "aws4_request" {
		return bad("want Credential=AKID/DATE/REGION/kms/aws4_request, SignedHeaders and Signature")
	}
	if scope[2] != s.opts.Region || scope[3] != "kms" {
		return errorf(http.StatusBadRequest, "InvalidSignatureException", "Credential should be scoped to a valid region and service kms, not %s/%s", scope[2], scope[3])
	}
	when, err := time.Parse(amzDate, r.Header.Get("X-Amz-Date"))
	if err != nil || when.Format("20060102") != scope[1] {
		return bad("X-Amz-Date missing or not the credential scope's date")
	}
	if s.opts.AccessKeys == nil {
		return nil
	}
	secret, ok := s.opts.AccessKeys[scope[0]]
	if !ok {
		return errorf(http.StatusBadRequest, "UnrecognizedClientException", "The security token included in the request is invalid.")
	}
	// Sign the same request again, with only the headers the client signed.
	re, err := http.NewRequest(r.Method, "https://"+r.Host+r.URL.RequestURI(), nil)
	if err != nil {
		return bad(err.Error())
	}
	re.Host = r.Host
	re.ContentLength = int64(len(body))
	for _, h := range strings.Split(signed, ";") {
		if h != "host" && h != "content-length" {
			re.Header[http.CanonicalHeaderKey(h)] = r.Header.Values(h)
		}
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: scope[0], SecretAccessKey: secret, SessionToken: r.Header.Get("X-Amz-Security-Token")}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, re, hex.EncodeToString(sum[:]), "kms", s.opts.Region, when); err != nil {
		return bad(err.Error())
	}
	want := re.Header.Get("Authorization")
	if subtle.ConstantTimeCompare([]byte(want), []byte(auth)) != 1 {
		return errorf(http.StatusBadRequest, "InvalidSignatureException", "The request signature we calculated does not match the signature you provided.")
	}
	return nil
}
