package imgbuild

import (
	"encoding/json"
	"fmt"

	"github.com/enclave-storage/enclave-storage/eif"
)

// KeyPolicyFile is the key-policy statement written next to pcrs.json.
const KeyPolicyFile = "kms-key-policy.json"

// PrincipalPlaceholder stands for the parent instance's role in the written
// statement. It is not a valid ARN, so KMS refuses the policy until the user
// replaces it (arn:aws:iam::ACCOUNT:role/ROLE of the instance profile).
const PrincipalPlaceholder = "arn:aws:iam::ACCOUNT_ID:role/PARENT_INSTANCE_ROLE"

// KeyPolicyStatement is one statement of an AWS KMS key policy (IAM policy
// grammar).
type KeyPolicyStatement struct {
	Sid       string                       `json:"Sid"`
	Effect    string                       `json:"Effect"`
	Principal map[string]string            `json:"Principal"`
	Action    []string                     `json:"Action"`
	Resource  string                       `json:"Resource"`
	Condition map[string]map[string]string `json:"Condition"`
}

// KeyPolicy returns the statement that lets the parent's role obtain the
// run volume's data key (kms:GenerateDataKey on first launch, kms:Decrypt
// afterwards) only for a recipient enclave whose attestation document
// carries this image's PCR0, PCR1 and PCR2, and PCR8 when the image is
// signed. KMS compares hex case-insensitively under StringEqualsIgnoreCase,
// as AWS's Nitro Enclaves documentation writes these conditions. Without
// the recipient, the condition keys are absent and the statement allows
// nothing: the parent alone cannot get the key.
func KeyPolicy(p eif.PCRs) KeyPolicyStatement {
	cond := map[string]string{
		"kms:RecipientAttestation:PCR0": p.PCR0.String(),
		"kms:RecipientAttestation:PCR1": p.PCR1.String(),
		"kms:RecipientAttestation:PCR2": p.PCR2.String(),
	}
	if len(p.PCR8) > 0 {
		cond["kms:RecipientAttestation:PCR8"] = p.PCR8.String()
	}
	return KeyPolicyStatement{
		Sid:       "EnclaveStorageRunVolumeKey",
		Effect:    "Allow",
		Principal: map[string]string{"AWS": PrincipalPlaceholder},
		Action:    []string{"kms:GenerateDataKey", "kms:Decrypt"},
		Resource:  "*", // in a key policy, "*" is the key itself
		Condition: map[string]map[string]string{"StringEqualsIgnoreCase": cond},
	}
}

// WriteKeyPolicy writes KeyPolicy(p) as indented JSON to path.
func WriteKeyPolicy(path string, p eif.PCRs) error {
	b, err := json.MarshalIndent(KeyPolicy(p), "", "  ")
	if err != nil {
		return fmt.Errorf("imgbuild: key policy: %w", err)
	}
	return writeFileAtomic(path, append(b, '\n'))
}
