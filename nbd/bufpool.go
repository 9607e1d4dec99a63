package nbd

import (
	"math/bits"
	"sync"
)

// bufPool recycles request and reply buffers in size classes of
// bufHeadroom + 4 KiB·2^i, so a read reply (header plus data) and a write
// payload of the same length come from the same class.
type bufPool struct {
	classes []sync.Pool
}

// bufHeadroom is the largest reply header before read data: a
// structured NBD_REPLY_TYPE_OFFSET_DATA chunk's (a simple reply's is 16).
const bufHeadroom = readChunkSize

// buffer is a pooled byte slice; b is resliced to the requested length.
type buffer struct {
	b     []byte
	class int // -1: not pooled
}

func newBufPool(maxBlock int) bufPool {
	n := 1
	for classSize(n-1) < bufHeadroom+maxBlock {
		n++
	}
	return bufPool{classes: make([]sync.Pool, n)}
}

func classSize(i int) int { return bufHeadroom + 4096<<i }

// class is the smallest class holding n bytes, or -1.
func (p *bufPool) class(n int) int {
	i := 0
	if n > classSize(0) {
		i = bits.Len(uint(n-bufHeadroom-1)) - 12
		if classSize(i) < n {
			i++
		}
	}
	if i >= len(p.classes) {
		return -1
	}
	return i
}

// get returns a buffer of length n.
func (p *bufPool) get(n int) *buffer {
	c := p.class(n)
	if c < 0 {
		return &buffer{b: make([]byte, n), class: -1}
	}
	if v := p.classes[c].Get(); v != nil {
		b := v.(*buffer)
		b.b = b.b[:n]
		return b
	}
	return &buffer{b: make([]byte, n, classSize(c)), class: c}
}

// put recycles b; it must not be used afterwards.
func (p *bufPool) put(b *buffer) {
	if b == nil || b.class < 0 {
		return
	}
	p.classes[b.class].Put(b)
}
