package cms

import (
	"bytes"
	"fmt"
)

// Bounds of the BER reader. KMS returns at most a few KiB (a data key or a
// Decrypt plaintext of at most 4 KiB, plus about 500 bytes of envelope).
const (
	// MaxSize is the largest input Decrypt reads.
	MaxSize = 64 << 10
	// maxDepth bounds nesting; EnvelopedData needs 10 levels.
	maxDepth = 16
	// maxElements bounds the number of elements in one input.
	maxElements = 4096
)

// ASN.1 classes and universal tags the reader names.
const (
	classUniversal       = 0
	classContextSpecific = 2

	tagInteger     = 2
	tagOctetString = 4
	tagNull        = 5
	tagOID         = 6
	tagSequence    = 16
	tagSet         = 17
)

// element is one decoded BER element. A primitive element has content; a
// constructed one has children (its content is their encoding).
type element struct {
	class       int
	tag         int
	constructed bool
	content     []byte
	children    []*element
}

func (e *element) is(class, tag int, constructed bool) bool {
	return e.class == class && e.tag == tag && e.constructed == constructed
}

func (e *element) String() string {
	c := "prim"
	if e.constructed {
		c = "cons"
	}
	return fmt.Sprintf("[class %d tag %d %s]", e.class, e.tag, c)
}

// berReader holds the running element count of one parse.
type berReader struct {
	elements int
}

// parseBER decodes exactly one BER element spanning all of b.
func parseBER(b []byte) (*element, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(b), MaxSize)
	}
	var r berReader
	e, rest, err := r.parse(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(rest))
	}
	return e, nil
}

// parse decodes one element from the front of b and returns what follows it.
func (r *berReader) parse(b []byte, depth int) (*element, []byte, error) {
	if depth > maxDepth {
		return nil, nil, fmt.Errorf("%w: nesting deeper than %d", ErrMalformed, maxDepth)
	}
	r.elements++
	if r.elements > maxElements {
		return nil, nil, fmt.Errorf("%w: more than %d elements", ErrMalformed, maxElements)
	}
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%w: truncated element header", ErrMalformed)
	}
	id := b[0]
	e := &element{class: int(id >> 6), constructed: id&0x20 != 0, tag: int(id & 0x1f)}
	if e.tag == 0x1f {
		// High tag numbers (31 and up) appear nowhere in EnvelopedData.
		return nil, nil, fmt.Errorf("%w: high tag number form", ErrMalformed)
	}
	l := b[1]
	b = b[2:]
	if l == 0x80 {
		if !e.constructed {
			return nil, nil, fmt.Errorf("%w: indefinite length on primitive %v", ErrMalformed, e)
		}
		for {
			if len(b) >= 2 && b[0] == 0 && b[1] == 0 {
				return e, b[2:], nil
			}
			if len(b) == 0 {
				return nil, nil, fmt.Errorf("%w: missing end-of-contents in %v", ErrMalformed, e)
			}
			c, rest, err := r.parse(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			e.children = append(e.children, c)
			b = rest
		}
	}
	n := int(l)
	if l&0x80 != 0 {
		k := int(l & 0x7f)
		if k > 3 || k == 0x7f {
			// Three length bytes reach 16 MiB, far above MaxSize.
			return nil, nil, fmt.Errorf("%w: %d length bytes", ErrMalformed, k)
		}
		if len(b) < k {
			return nil, nil, fmt.Errorf("%w: truncated length", ErrMalformed)
		}
		n = 0
		for _, x := range b[:k] {
			n = n<<8 | int(x)
		}
		b = b[k:]
	}
	if n > len(b) {
		return nil, nil, fmt.Errorf("%w: %v length %d exceeds the %d bytes left", ErrMalformed, e, n, len(b))
	}
	body, rest := b[:n], b[n:]
	if !e.constructed {
		if e.class == classUniversal && e.tag == 0 {
			return nil, nil, fmt.Errorf("%w: end-of-contents outside an indefinite length", ErrMalformed)
		}
		e.content = body
		return e, rest, nil
	}
	for len(body) > 0 {
		c, more, err := r.parse(body, depth+1)
		if err != nil {
			return nil, nil, err
		}
		e.children = append(e.children, c)
		body = more
	}
	return e, rest, nil
}

// octets returns the value of an OCTET STRING in either BER form: primitive,
// or constructed from primitive OCTET STRING chunks (X.690 8.7.3; nested
// constructed chunks are not allowed by X.690 for DER/CER and not produced by
// KMS or OpenSSL, so they are refused). The outer identifier has been checked
// by the caller (it may be an implicit tag).
func octets(e *element) ([]byte, error) {
	if !e.constructed {
		return e.content, nil
	}
	var buf bytes.Buffer
	for _, c := range e.children {
		if !c.is(classUniversal, tagOctetString, false) {
			return nil, fmt.Errorf("%w: OCTET STRING chunk is %v", ErrMalformed, c)
		}
		buf.Write(c.content)
	}
	return buf.Bytes(), nil
}
