package eif

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The metadata section is what nitro-cli writes with serde_json::to_vec of
// EifIdentityInfo: struct fields in declaration order, and DockerInfo and
// CustomMetadata as serde_json::Value, whose objects are BTreeMaps (keys in
// byte order) and whose numbers are u64, i64 or f64. This file reproduces
// that encoding byte for byte: compact, strings escaped as serde_json
// escapes them, Values re-encoded from the JSON text we are given.

// serdeMarshal encodes m as serde_json::to_vec(&EifIdentityInfo) does.
func serdeMarshal(m *Metadata) ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	fields := []struct {
		key string
		enc func() error
	}{
		{"ImageName", func() error { return serdeString(&b, m.ImageName) }},
		{"ImageVersion", func() error { return serdeString(&b, m.ImageVersion) }},
		{"BuildMetadata", func() error { return serdeBuildInfo(&b, &m.BuildMetadata) }},
		{"DockerInfo", func() error { return serdeValue(&b, m.DockerInfo) }},
		{"CustomMetadata", func() error { return serdeValue(&b, m.CustomMetadata) }},
	}
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		serdeString(&b, f.key)
		b.WriteByte(':')
		if err := f.enc(); err != nil {
			return nil, fmt.Errorf("eif: metadata %s: %w", f.key, err)
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func serdeBuildInfo(b *bytes.Buffer, bi *BuildInfo) error {
	kv := [][2]string{
		{"BuildTime", bi.BuildTime}, {"BuildTool", bi.BuildTool}, {"BuildToolVersion", bi.BuildToolVersion},
		{"OperatingSystem", bi.OperatingSystem}, {"KernelVersion", bi.KernelVersion},
	}
	b.WriteByte('{')
	for i, f := range kv {
		if i > 0 {
			b.WriteByte(',')
		}
		serdeString(b, f[0])
		b.WriteByte(':')
		if err := serdeString(b, f[1]); err != nil {
			return fmt.Errorf("%s: %w", f[0], err)
		}
	}
	b.WriteByte('}')
	return nil
}

// serdeString writes s as serde_json writes a str: '"' and '\\' escaped,
// \b \f \n \r \t by name, other control characters as \u00xx (lowercase
// hex), everything else (DEL, U+2028, '<'...) as is. s must be UTF-8, as a
// Rust String is.
func serdeString(b *bytes.Buffer, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("string %q is not UTF-8", s)
	}
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			fmt.Fprintf(b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return nil
}

// serdeValue writes raw, one JSON value, as serde_json serializes the
// serde_json::Value it parses into; nil or empty raw is null.
func serdeValue(b *bytes.Buffer, raw json.RawMessage) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		b.WriteString("null")
		return nil
	}
	if !utf8.Valid(raw) {
		return errors.New("not UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("not valid JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("not valid JSON: trailing data")
	}
	return writeSerdeValue(b, v)
}

func writeSerdeValue(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case string:
		return serdeString(b, v)
	case json.Number:
		s, err := serdeNumber(string(v))
		if err != nil {
			return err
		}
		b.WriteString(s)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeSerdeValue(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys) // BTreeMap<String, Value>: byte order
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := serdeString(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := writeSerdeValue(b, v[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		return fmt.Errorf("unexpected JSON value %T", v)
	}
	return nil
}

// serdeNumber returns how serde_json prints the number literal lit once
// parsed into a Value: integers that fit u64 (or i64, when negative) as
// they are; everything else (fractions, exponents, larger integers, -0)
// as an f64 in ryu's format.
func serdeNumber(lit string) (string, error) {
	if !strings.ContainsAny(lit, ".eE") {
		if u, err := strconv.ParseUint(lit, 10, 64); err == nil {
			return strconv.FormatUint(u, 10), nil
		}
		if i, err := strconv.ParseInt(lit, 10, 64); err == nil && i != 0 {
			return strconv.FormatInt(i, 10), nil
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) {
		return "", fmt.Errorf("number %s out of range", lit)
	}
	return ryuFormat(f), nil
}

// ryuFormat formats a finite f64 as the ryu crate does (serde_json's
// float output): the shortest digits that round-trip, as 12340000000.0,
// 12.34, 0.001234, 1e30 or 1.234e33 depending on the decimal exponent.
func ryuFormat(f float64) string {
	var b strings.Builder
	if math.Signbit(f) {
		b.WriteByte('-')
		f = -f
	}
	if f == 0 {
		b.WriteString("0.0")
		return b.String()
	}
	// Shortest round-trip digits d1.d2d3...e±X: digits and exponent.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, exp, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	x, _ := strconv.Atoi(exp)
	length := len(digits)
	kk := x + 1      // value is 0.digits × 10^kk
	k := kk - length // value is digits × 10^k
	switch {
	case 0 <= k && kk <= 16:
		b.WriteString(digits)
		b.WriteString(strings.Repeat("0", k))
		b.WriteString(".0")
	case 0 < kk && kk <= 16:
		b.WriteString(digits[:kk])
		b.WriteByte('.')
		b.WriteString(digits[kk:])
	case -5 < kk && kk <= 0:
		b.WriteString("0.")
		b.WriteString(strings.Repeat("0", -kk))
		b.WriteString(digits)
	case length == 1:
		b.WriteString(digits)
		b.WriteByte('e')
		b.WriteString(strconv.Itoa(kk - 1))
	default:
		b.WriteString(digits[:1])
		b.WriteByte('.')
		b.WriteString(digits[1:])
		b.WriteByte('e')
		b.WriteString(strconv.Itoa(kk - 1))
	}
	return b.String()
}
