package eif

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Metadata is the JSON of the metadata section (EifIdentityInfo in
// aws-nitro-enclaves-image-format). Build encodes it as nitro-cli does
// with serde_json (serdejson.go). It is not measured into any PCR.
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

// FormatBuildTime formats t as chrono's DateTime<Utc>::to_rfc3339 does,
// the form nitro-cli writes in BuildTime: offset "+00:00", and fractional
// seconds (SecondsFormat::AutoSi) only when non-zero, in 3, 6 or 9 digits,
// the fewest that hold them.
func FormatBuildTime(t time.Time) string {
	t = t.UTC()
	ns := t.Nanosecond()
	layout := "2006-01-02T15:04:05.000000000"
	switch {
	case ns == 0:
		layout = "2006-01-02T15:04:05"
	case ns%1_000_000 == 0:
		layout = "2006-01-02T15:04:05.000"
	case ns%1_000 == 0:
		layout = "2006-01-02T15:04:05.000000"
	}
	return t.Format(layout) + "+00:00"
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

// marshal encodes m as nitro-cli does (serde_json; see serdeMarshal).
func (m *Metadata) marshal() ([]byte, error) { return serdeMarshal(m) }
