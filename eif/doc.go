// Package eif writes and reads AWS Nitro Enclave Image Format (EIF) files
// and computes the PCRs an enclave booted from them will report.
//
// # Format
//
// The layout follows aws-nitro-enclaves-image-format (src/defs, src/utils)
// byte for byte. All integers are big endian.
//
//	offset 0    header, 548 bytes:
//	            magic ".eif" (2e 65 69 66), version u16 (4), flags u16
//	            (bit 0: aarch64), default_mem u64 (1 GiB), default_cpus u64
//	            (2), reserved u16, num_sections u16, section_offsets
//	            [32]u64, section_sizes [32]u64, unused u32, crc32 u32
//	offset 548  sections, back to back, each a 12-byte header (type u16,
//	            flags u16, size u64) and size bytes of data
//
// Section types are 1 kernel, 2 cmdline, 3 ramdisk, 4 signature,
// 5 metadata (0 is invalid). section_offsets point at each section's
// header. Build writes them in nitro-cli's order: kernel, cmdline,
// metadata, ramdisks (the signature, when there is one, comes last). The
// cmdline is written without a trailing NUL. The metadata section is
// compact JSON (ImageName, ImageVersion, BuildMetadata{BuildTime,
// BuildTool, BuildToolVersion, OperatingSystem, KernelVersion},
// DockerInfo, CustomMetadata), byte for byte as serde_json::to_vec writes
// nitro-cli's EifIdentityInfo: struct fields in declaration order,
// DockerInfo and CustomMetadata as serde_json::Value (object keys sorted,
// integers kept, other numbers as ryu-formatted f64, serde's string
// escapes), BuildTime as chrono's to_rfc3339. The header flags carry
// FlagARM64 for an arm64 kernel (KernelFlags). crc32 is the IEEE (ISO-HDLC) CRC-32 of the
// whole file except the crc32 field itself: the first 544 header bytes,
// then every section header and its data in file order.
//
// # Measurements
//
// Each PCR is SHA-384(48 zero bytes || SHA-384(measured bytes)), the
// extend of a zeroed register. PCR0 measures the data of the kernel,
// cmdline and every ramdisk section in file order; PCR1 the kernel,
// cmdline and first (bootstrap) ramdisk; PCR2 the remaining (application)
// ramdisks; PCR8, for signed images, the DER signing certificate. Section
// headers, metadata and the signature are not measured. PCRs marshals to
// JSON as nitro-cli's "Measurements" object ("HashAlgorithm":
// "Sha384 { ... }", hex PCRs).
//
// # Pinning the root filesystem
//
// imgbuild pins the dm-verity root hash of the root filesystem twice, in
// two measured places:
//
//   - the kernel command line carries enclave_storage.verity_root=<hex>
//     (PinCmdline), measured into PCR0 and PCR1;
//   - the application ramdisk (AppRamdisk, the second ramdisk, measured
//     into PCR0 and PCR2) carries /etc/enclave-storage/verity.json (the
//     full verity parameters: root hash, salt, algorithm, block sizes,
//     hash offset), /etc/enclave-storage/config.json and nbd-enclave
//     itself as /usr/bin/nbd-enclave with /init pointing to it.
//
// nbd-enclave reads both, refuses to start unless the root hash in
// verity.json equals the one from /proc/cmdline (pin.VerityRoot),
// and opens dm-verity with those parameters. Anyone changing the
// filesystem, its verity parameters or the code that checks them changes
// PCR0, and with it every attestation document the enclave can produce;
// KMS key policies conditioned on PCR0 (or PCR1 and PCR2) then refuse
// the enclave its keys.
//
// The build pipeline calls, in order: AppRamdisk.Write (the second
// ramdisk), PinCmdline (the cmdline), then Build with the kernel, the
// bootstrap ramdisk and the app ramdisk.
//
// # Why our own
//
// The reference implementation is Rust (aws-nitro-enclaves-image-format,
// used by nitro-cli build-enclave and eif_build) and there is no Go
// package for EIF; we need EIFs built reproducibly inside imgbuild
// without a Rust toolchain or Docker, so this package reimplements the
// format from the Rust sources. Signing (Spec.Signer) and verification
// (File.VerifySignature) follow nitro-cli: a COSE_Sign1 (ES256/384/512)
// of {"register_index": 0, "register_value": PCR0} next to the PEM
// certificate, CBOR-encoded as serde_cbor does. The few CBOR shapes
// involved are handled by a small codec here rather than a dependency;
// the verifier is checked against aws-nitro-enclaves-cose's ES384
// known-answer vector.
package eif
