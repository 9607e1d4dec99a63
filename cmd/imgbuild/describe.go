package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/enclave-storage/enclave-storage/eif"
	"github.com/enclave-storage/enclave-storage/imgbuild"
)

func describeCommand() subcommand {
	return subcommand{
		name:    "describe",
		summary: "print an EIF's header, sections, metadata and PCRs (like nitro-cli describe-eif)",
		run:     runDescribe,
	}
}

func runDescribe(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "describe", "describe FILE.eif [--json]")
	asJSON := fs.Bool("json", false, "print nitro-cli describe-eif's JSON (plus Cmdline and Sections)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return usagef("want exactly one EIF file, got %d arguments", len(pos))
	}
	name := pos[0]
	fh, err := os.Open(name)
	if err != nil {
		return err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	f, err := eif.ReadContext(ctx, fh, st.Size())
	var crcErr *eif.CRCError
	if err != nil && !errors.As(err, &crcErr) {
		return fmt.Errorf("%s: %w", name, err)
	}
	// Kernel modules are read back from the ramdisks; one that is not a
	// plain newc archive (a compressed ramdisk) only hides the list.
	mods, modErr := imgbuild.EIFModules(ctx, f)
	if *asJSON {
		b, err := describeJSON(f, mods)
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "%s\n", b)
	} else {
		describeText(env.stdout, f)
		describeModules(env.stdout, mods, modErr)
	}
	if crcErr != nil {
		return fmt.Errorf("%s: %w", name, crcErr)
	}
	if f.Signature != nil {
		if _, err := f.VerifySignature(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// describeInfo mirrors nitro-cli's EifDescribeInfo (field names and
// order), with our Cmdline and Sections appended.
type describeInfo struct {
	EifVersion   uint16          `json:"EifVersion"`
	Measurements eif.PCRs        `json:"Measurements"`
	IsSigned     bool            `json:"IsSigned"`
	Certificate  *certInfo       `json:"SigningCertificate,omitempty"`
	CheckCRC     bool            `json:"CheckCRC"`
	SignCheck    *bool           `json:"SignatureCheck,omitempty"`
	ImageName    *string         `json:"ImageName,omitempty"`
	ImageVersion *string         `json:"ImageVersion,omitempty"`
	Metadata     json.RawMessage `json:"Metadata,omitempty"`
	Cmdline      string          `json:"Cmdline"`
	Sections     []sectionInfo   `json:"Sections"`
	// KernelModules are the modules the ramdisks carry, in load order.
	KernelModules []imgbuild.CarriedModule `json:"KernelModules,omitempty"`
}

// certInfo mirrors nitro-cli's SignCertificateInfo, with OpenSSL's
// spelling of names, algorithms and times.
type certInfo struct {
	IssuerName map[string]string `json:"IssuerName"`
	Algorithm  string            `json:"Algorithm"`
	NotBefore  string            `json:"NotBefore"`
	NotAfter   string            `json:"NotAfter"`
	Signature  string            `json:"Signature"`
}

// OpenSSL long names of the usual distinguished name attributes.
var attrNames = map[string]string{
	"2.5.4.3": "commonName", "2.5.4.6": "countryName", "2.5.4.7": "localityName",
	"2.5.4.8": "stateOrProvinceName", "2.5.4.10": "organizationName", "2.5.4.11": "organizationalUnitName",
}

// OpenSSL names of the certificate signature algorithms.
var sigAlgNames = map[x509.SignatureAlgorithm]string{
	x509.ECDSAWithSHA256: "ecdsa-with-SHA256", x509.ECDSAWithSHA384: "ecdsa-with-SHA384", x509.ECDSAWithSHA512: "ecdsa-with-SHA512",
	x509.SHA256WithRSA: "sha256WithRSAEncryption", x509.SHA384WithRSA: "sha384WithRSAEncryption", x509.SHA512WithRSA: "sha512WithRSAEncryption",
}

func newCertInfo(c *x509.Certificate) *certInfo {
	ci := &certInfo{IssuerName: map[string]string{}, Algorithm: c.SignatureAlgorithm.String()}
	for _, a := range c.Issuer.Names {
		k := a.Type.String()
		if n, ok := attrNames[k]; ok {
			k = n
		}
		ci.IssuerName[k] = fmt.Sprint(a.Value)
	}
	if n, ok := sigAlgNames[c.SignatureAlgorithm]; ok {
		ci.Algorithm = n
	}
	const asn1Time = "Jan _2 15:04:05 2006 GMT"
	ci.NotBefore, ci.NotAfter = c.NotBefore.UTC().Format(asn1Time), c.NotAfter.UTC().Format(asn1Time)
	hexes := make([]string, len(c.Signature))
	for i, b := range c.Signature {
		hexes[i] = fmt.Sprintf("%02X", b)
	}
	ci.Signature = strings.Join(hexes, ":")
	return ci
}

// signingCert returns the signing certificate of a signed image and
// whether its PCR0 signature verifies.
func signingCert(f *eif.File) (*x509.Certificate, bool, error) {
	sigs, err := eif.ParseSignatureSection(f.Signature)
	if err != nil {
		return nil, false, err
	}
	block, _ := pem.Decode(sigs[0].SigningCertificate)
	if block == nil {
		return nil, false, errors.New("signing certificate is not PEM")
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, false, err
	}
	_, verr := f.VerifySignature()
	return c, verr == nil, nil
}

type sectionInfo struct {
	Type   string `json:"Type"`
	Offset int64  `json:"Offset"`
	Size   int64  `json:"Size"`
}

// metadataInfo is nitro-cli's MetadataDescribeInfo without the flattened
// CustomMetadata, which describeJSON splices in after these fields.
type metadataInfo struct {
	BuildTime        string          `json:"BuildTime"`
	BuildTool        string          `json:"BuildTool"`
	BuildToolVersion string          `json:"BuildToolVersion"`
	OperatingSystem  string          `json:"OperatingSystem"`
	KernelVersion    string          `json:"KernelVersion"`
	DockerInfo       json.RawMessage `json:"DockerInfo"`
}

func describeJSON(f *eif.File, mods []imgbuild.CarriedModule) ([]byte, error) {
	info := describeInfo{
		EifVersion:    f.Header.Version,
		Measurements:  f.PCRs,
		IsSigned:      f.Signature != nil,
		CheckCRC:      f.CRCValid(),
		Cmdline:       f.Cmdline,
		KernelModules: mods,
	}
	for _, s := range f.Sections {
		info.Sections = append(info.Sections, sectionInfo{s.Type.String(), s.Offset, s.Size})
	}
	if f.Signature != nil {
		c, ok, err := signingCert(f)
		if err != nil {
			return nil, err
		}
		info.Certificate, info.SignCheck = newCertInfo(c), &ok
	}
	if m := f.Metadata; m != nil {
		info.ImageName, info.ImageVersion = &m.ImageName, &m.ImageVersion
		b := m.BuildMetadata
		docker := m.DockerInfo
		if docker == nil {
			docker = json.RawMessage("null")
		}
		mb, err := json.Marshal(metadataInfo{b.BuildTime, b.BuildTool, b.BuildToolVersion, b.OperatingSystem, b.KernelVersion, docker})
		if err != nil {
			return nil, err
		}
		// serde's #[serde(flatten)] merges a CustomMetadata object's keys
		// into Metadata; anything else (null, scalars) is left out.
		var custom bytes.Buffer
		if len(m.CustomMetadata) > 0 && json.Compact(&custom, m.CustomMetadata) == nil {
			if c := custom.Bytes(); len(c) > 2 && c[0] == '{' {
				mb = append(append(mb[:len(mb)-1], ','), c[1:]...)
			}
		}
		info.Metadata = mb
	}
	return json.MarshalIndent(info, "", "  ")
}

func describeText(w io.Writer, f *eif.File) {
	h := f.Header
	arch := "x86_64"
	if h.Flags&eif.FlagARM64 != 0 {
		arch = "aarch64"
	}
	crc := "OK"
	if !f.CRCValid() {
		crc = fmt.Sprintf("MISMATCH (contents give %08x)", f.CRC32)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "EIF version:\t%d\n", h.Version)
	fmt.Fprintf(tw, "Flags:\t%#04x (%s)\n", h.Flags, arch)
	fmt.Fprintf(tw, "Default memory:\t%d MiB\n", h.DefaultMem>>20)
	fmt.Fprintf(tw, "Default CPUs:\t%d\n", h.DefaultCPUs)
	fmt.Fprintf(tw, "CRC32:\t%08x %s\n", h.CRC32, crc)
	if f.Signature == nil {
		fmt.Fprintf(tw, "Signed:\tfalse\n")
	} else if c, ok, err := signingCert(f); err != nil {
		fmt.Fprintf(tw, "Signed:\ttrue, unreadable signature: %v\n", err)
	} else {
		check := "signature OK"
		if !ok {
			check = "SIGNATURE INVALID"
		}
		fmt.Fprintf(tw, "Signed:\ttrue, %s\n", check)
		fmt.Fprintf(tw, "Signer:\t%s (issuer %s)\n", c.Subject, c.Issuer)
		fmt.Fprintf(tw, "Valid:\t%s to %s\n", c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(tw, "Cmdline:\t%s\n", f.Cmdline)
	if m := f.Metadata; m != nil {
		b := m.BuildMetadata
		fmt.Fprintf(tw, "Image:\t%s %s\n", m.ImageName, m.ImageVersion)
		fmt.Fprintf(tw, "Built:\t%s by %s %s\n", b.BuildTime, b.BuildTool, b.BuildToolVersion)
		fmt.Fprintf(tw, "Kernel:\t%s %s\n", b.OperatingSystem, b.KernelVersion)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nSections:")
	fmt.Fprintf(w, "  %2s  %-9s  %12s  %12s\n", "#", "Type", "Offset", "Size")
	for i, s := range f.Sections {
		fmt.Fprintf(w, "  %2d  %-9s  %12d  %12d\n", i, s.Type, s.Offset, s.Size)
	}
	p := f.PCRs
	fmt.Fprintf(w, "\nMeasurements (%s):\n", p.HashAlgorithm)
	fmt.Fprintf(w, "  PCR0  %s\n  PCR1  %s\n  PCR2  %s\n", p.PCR0, p.PCR1, p.PCR2)
	if p.PCR8 != nil {
		fmt.Fprintf(w, "  PCR8  %s\n", p.PCR8)
	}
}

// describeModules lists the kernel modules the ramdisks carry, in the
// order nbd-enclave loads them.
func describeModules(w io.Writer, mods []imgbuild.CarriedModule, err error) {
	if err != nil {
		fmt.Fprintf(w, "\nKernel modules: not listed (%v)\n", err)
		return
	}
	if len(mods) == 0 {
		return
	}
	var total int64
	for _, m := range mods {
		total += max(m.Size, 0)
	}
	fmt.Fprintf(w, "\nKernel modules (%d, %d bytes, in load order):\n", len(mods), total)
	for i, m := range mods {
		size := strconv.FormatInt(m.Size, 10)
		if m.Size < 0 {
			size = "MISSING"
		}
		fmt.Fprintf(w, "  %2d  %-34s  ramdisk %d  %9s  %s\n", i+1, m.Name, m.Ramdisk, size, m.Path)
	}
}
