package eif

import "errors"

// signingCertDER returns the DER signing certificate from a signature
// section.
func signingCertDER(sig []byte) ([]byte, error) {
	return nil, errors.New("signed EIFs are not supported yet")
}
