package eif

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A minimal CBOR (RFC 8949) codec for the signature section: definite
// lengths, integers, byte and text strings, arrays, maps, tags and the
// simple values false/true/null. That is all serde_cbor and the COSE
// library emit for nitro-cli's PcrSignature and COSE_Sign1 structures; a
// general CBOR library would be a dependency for ~150 lines.

// cborMaxDepth bounds nesting when decoding untrusted input.
const cborMaxDepth = 16

var errCBOR = errors.New("malformed CBOR")

// cborNeg is a negative integer: its value is -1 - n.
type cborNeg uint64

// cborTag is a tagged value.
type cborTag struct {
	num uint64
	val any
}

// cborPair is one map entry; maps keep their order.
type cborPair struct{ key, val any }

// cborDecode decodes exactly one item filling b.
func cborDecode(b []byte) (any, error) {
	v, rest, err := cborItem(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", errCBOR, len(rest))
	}
	return v, nil
}

func cborItem(b []byte, depth int) (any, []byte, error) {
	if depth > cborMaxDepth {
		return nil, nil, fmt.Errorf("%w: nested too deep", errCBOR)
	}
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: truncated", errCBOR)
	}
	major, info := b[0]>>5, b[0]&0x1f
	b = b[1:]
	var n uint64
	switch {
	case info < 24:
		n = uint64(info)
	case info <= 27:
		size := 1 << (info - 24)
		if len(b) < size {
			return nil, nil, fmt.Errorf("%w: truncated argument", errCBOR)
		}
		switch size {
		case 1:
			n = uint64(b[0])
		case 2:
			n = uint64(binary.BigEndian.Uint16(b))
		case 4:
			n = uint64(binary.BigEndian.Uint32(b))
		case 8:
			n = binary.BigEndian.Uint64(b)
		}
		b = b[size:]
	default:
		return nil, nil, fmt.Errorf("%w: unsupported additional info %d (indefinite length?)", errCBOR, info)
	}
	switch major {
	case 0:
		return n, b, nil
	case 1:
		return cborNeg(n), b, nil
	case 2, 3:
		if n > uint64(len(b)) {
			return nil, nil, fmt.Errorf("%w: string of %d bytes with %d left", errCBOR, n, len(b))
		}
		s := b[:n]
		if major == 3 {
			return string(s), b[n:], nil
		}
		return append([]byte{}, s...), b[n:], nil
	case 4:
		if n > uint64(len(b)) { // every item takes at least one byte
			return nil, nil, fmt.Errorf("%w: array of %d items with %d bytes left", errCBOR, n, len(b))
		}
		arr := make([]any, 0, n)
		for range n {
			v, rest, err := cborItem(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			arr, b = append(arr, v), rest
		}
		return arr, b, nil
	case 5:
		if n > uint64(len(b))/2 {
			return nil, nil, fmt.Errorf("%w: map of %d pairs with %d bytes left", errCBOR, n, len(b))
		}
		m := make([]cborPair, 0, n)
		for range n {
			k, rest, err := cborItem(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			v, rest, err := cborItem(rest, depth+1)
			if err != nil {
				return nil, nil, err
			}
			m, b = append(m, cborPair{k, v}), rest
		}
		return m, b, nil
	case 6:
		v, rest, err := cborItem(b, depth+1)
		if err != nil {
			return nil, nil, err
		}
		return cborTag{n, v}, rest, nil
	default: // 7
		switch {
		case info == 20:
			return false, b, nil
		case info == 21:
			return true, b, nil
		case info == 22:
			return nil, b, nil
		}
		return nil, nil, fmt.Errorf("%w: unsupported simple value or float %#x", errCBOR, info)
	}
}

// cborBytes accepts a byte string, or an array of integers 0..255 (how
// serde_cbor encodes a Rust Vec<u8>).
func cborBytes(v any) ([]byte, bool) {
	switch v := v.(type) {
	case []byte:
		return v, true
	case []any:
		out := make([]byte, len(v))
		for i, e := range v {
			n, ok := e.(uint64)
			if !ok || n > 255 {
				return nil, false
			}
			out[i] = byte(n)
		}
		return out, true
	}
	return nil, false
}

// cborLookup returns the value of the text key in a decoded map.
func cborLookup(m []cborPair, key string) (any, bool) {
	for _, p := range m {
		if k, ok := p.key.(string); ok && k == key {
			return p.val, true
		}
	}
	return nil, false
}

// cborHead appends a major type and argument in the shortest form, as
// serde_cbor and the COSE library do.
func cborHead(b []byte, major byte, n uint64) []byte {
	m := major << 5
	switch {
	case n < 24:
		return append(b, m|byte(n))
	case n <= 0xff:
		return append(b, m|24, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(b, m|25), uint16(n))
	case n <= 0xffffffff:
		return binary.BigEndian.AppendUint32(append(b, m|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, m|27), n)
}

func cborInt(b []byte, n int64) []byte {
	if n < 0 {
		return cborHead(b, 1, uint64(-1-n))
	}
	return cborHead(b, 0, uint64(n))
}

func cborBstr(b, s []byte) []byte { return append(cborHead(b, 2, uint64(len(s))), s...) }
func cborTstr(b []byte, s string) []byte {
	return append(cborHead(b, 3, uint64(len(s))), s...)
}

// cborU8Array encodes bytes as serde_cbor encodes a Vec<u8>: an array of
// unsigned integers.
func cborU8Array(b, s []byte) []byte {
	b = cborHead(b, 4, uint64(len(s)))
	for _, c := range s {
		b = cborHead(b, 0, uint64(c))
	}
	return b
}
