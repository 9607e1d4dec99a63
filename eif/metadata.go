package eif

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Metadata is the JSON of the metadata section (EifIdentityInfo in
// aws-nitro-enclaves-image-format). Field order and names match what
// nitro-cli writes with serde_json. It is not measured into any PCR.
type Metadata struct {
	ImageName     string    `json:"ImageName"`
	ImageVersion  string    `json:"ImageVersion"`
	BuildMetadata BuildInfo `json:"BuildMetadata"`
	// DockerInfo is the container image's inspect JSON; nil writes null.
	DockerInfo json.RawMessage `json:"DockerInfo"`
	// CustomMetadata is free-form JSON from the user; nil writes null.
	CustomMetadata json.RawMessage `json:"CustomMetadata"`
}

// BuildInfo is EifBuildInfo: how and when the image was built.
type BuildInfo struct {
	BuildTime        string `json:"BuildTime"` // RFC 3339, e.g. "2024-01-02T03:04:05+00:00"
	BuildTool        string `json:"BuildTool"`
	BuildToolVersion string `json:"BuildToolVersion"`
	OperatingSystem  string `json:"OperatingSystem"`
	KernelVersion    string `json:"KernelVersion"`
}

// FormatBuildTime formats t as chrono's to_rfc3339 does for UTC times
// ("+00:00", fractional seconds only when non-zero), the form nitro-cli
// writes in BuildTime.
func FormatBuildTime(t time.Time) string {
	t = t.UTC()
	if t.Nanosecond() == 0 {
		return t.Format("2006-01-02T15:04:05-07:00")
	}
	return t.Format("2006-01-02T15:04:05.000000000-07:00")
}

// SourceDateEpoch returns the time in $SOURCE_DATE_EPOCH
// (reproducible-builds.org), or ok false when it is unset.
func SourceDateEpoch() (t time.Time, ok bool, err error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return time.Time{}, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("eif: SOURCE_DATE_EPOCH=%q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), true, nil
}

// marshal encodes m compactly without HTML escaping, as serde_json does.
func (m *Metadata) marshal() ([]byte, error) {
	for name, raw := range map[string]json.RawMessage{"DockerInfo": m.DockerInfo, "CustomMetadata": m.CustomMetadata} {
		if raw != nil && !json.Valid(raw) {
			return nil, fmt.Errorf("eif: metadata %s is not valid JSON", name)
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("eif: encoding metadata: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
