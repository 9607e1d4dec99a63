package imgbuild

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/enclave-storage/enclave-storage/eif"
)

// KeyPolicyFile is the key-policy statements written next to pcrs.json.
const KeyPolicyFile = "kms-key-policy.json"

// PrincipalPlaceholder stands for the parent instance's role in the written
// Allow statement. It is not a valid ARN, so KMS refuses the policy until
// the user replaces it (arn:aws:iam::ACCOUNT:role/ROLE of the instance
// profile).
const PrincipalPlaceholder = "arn:aws:iam::ACCOUNT_ID:role/PARENT_INSTANCE_ROLE"

// KeyPolicyStatement is one statement of an AWS KMS key policy (IAM policy
// grammar).
type KeyPolicyStatement struct {
	Sid    string `json:"Sid"`
	Effect string `json:"Effect"` // "Allow" or "Deny"
	// Principal is {"AWS": ARN} or "*" (everyone).
	Principal any                          `json:"Principal"`
	Action    []string                     `json:"Action"`
	Resource  string                       `json:"Resource"`
	Condition map[string]map[string]string `json:"Condition"`
}

// pcrKeys returns the image's PCRs by condition key: PCR0, PCR1, PCR2,
// and PCR8 when the image is signed.
func pcrKeys(p eif.PCRs) []struct{ key, value string } {
	out := []struct{ key, value string }{
		{"kms:RecipientAttestation:PCR0", p.PCR0.String()},
		{"kms:RecipientAttestation:PCR1", p.PCR1.String()},
		{"kms:RecipientAttestation:PCR2", p.PCR2.String()},
	}
	if len(p.PCR8) > 0 {
		out = append(out, struct{ key, value string }{"kms:RecipientAttestation:PCR8", p.PCR8.String()})
	}
	return out
}

// KeyPolicy returns the statements that release the run volume's data key
// only to an enclave whose attestation document carries this image's
// PCR0, PCR1, PCR2 (and PCR8 when signed). KMS compares hex
// case-insensitively under the IgnoreCase operators, as AWS's Nitro
// Enclaves documentation writes these conditions.
//
// The first statement allows the parent's role kms:GenerateDataKey (first
// launch) and kms:Decrypt (later) with those PCRs. An Allow alone is not
// enough: AWS's default key policy gives the account root kms:* and so
// lets IAM policies grant kms:Decrypt, and a parent role holding that in
// IAM would decrypt the token's blob without any attestation. So one Deny
// statement per PCR follows, for every principal, on kms:Decrypt,
// kms:GenerateDataKey and kms:ReEncryptFrom (which would re-wrap the blob
// under a key without this policy), when that PCR differs:
//
//   - one statement per PCR, not one with all keys: IAM ANDs the keys of one
//     condition operator, so a single Deny would deny only when every PCR
//     differs, and an image differing in one PCR would pass;
//   - StringNotEqualsIgnoreCase is true when the key is absent, so a call
//     without a Recipient attestation document (the parent alone, an
//     administrator, ReEncrypt, which carries none) is denied too: the key
//     must serve this enclave and nothing else.
//
// An explicit Deny wins over any Allow, in the key policy or in IAM.
func KeyPolicy(p eif.PCRs) []KeyPolicyStatement {
	keys := pcrKeys(p)
	allow := map[string]string{}
	for _, k := range keys {
		allow[k.key] = k.value
	}
	out := []KeyPolicyStatement{{
		Sid:       "EnclaveStorageRunVolumeKey",
		Effect:    "Allow",
		Principal: map[string]string{"AWS": PrincipalPlaceholder},
		Action:    []string{"kms:GenerateDataKey", "kms:Decrypt"},
		Resource:  "*", // in a key policy, "*" is the key itself
		Condition: map[string]map[string]string{"StringEqualsIgnoreCase": allow},
	}}
	for _, k := range keys {
		out = append(out, KeyPolicyStatement{
			Sid:       "EnclaveStorageDenyOther" + strings.TrimPrefix(k.key, "kms:RecipientAttestation:"),
			Effect:    "Deny",
			Principal: "*",
			Action:    []string{"kms:Decrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom"},
			Resource:  "*",
			Condition: map[string]map[string]string{"StringNotEqualsIgnoreCase": {k.key: k.value}},
		})
	}
	return out
}

// WriteKeyPolicy writes KeyPolicy(p), a JSON array of statements, indented
// to path.
func WriteKeyPolicy(path string, p eif.PCRs) error {
	b, err := json.MarshalIndent(KeyPolicy(p), "", "  ")
	if err != nil {
		return fmt.Errorf("imgbuild: key policy: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}
