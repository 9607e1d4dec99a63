package dm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Sizes and offsets of the kernel ABI, from include/uapi/linux/dm-ioctl.h.
const (
	nameLen      = 128 // DM_NAME_LEN, including the NUL
	uuidLen      = 129 // DM_UUID_LEN, including the NUL
	typeNameLen  = 16  // DM_MAX_TYPE_NAME, including the NUL
	headerSize   = 312 // sizeof(struct dm_ioctl)
	specSize     = 40  // sizeof(struct dm_target_spec)
	nameListName = 12  // offsetof(struct dm_name_list, name)

	offName = 48
	offUUID = 176
)

// Ioctl command numbers (enum in dm-ioctl.h).
const (
	cmdVersion     = 0
	cmdListDevices = 2
	cmdDevCreate   = 3
	cmdDevRemove   = 4
	cmdDevSuspend  = 6
	cmdDevStatus   = 7
	cmdTableLoad   = 9
	cmdTableStatus = 12
)

// ioctlRequest returns the request number of _IOWR(DM_IOCTL, cmd, struct dm_ioctl).
func ioctlRequest(cmd uint) uint {
	const (
		dmIoctl  = 0xfd
		iocRead  = 2
		iocWrite = 1
	)
	return (iocRead|iocWrite)<<30 | headerSize<<16 | dmIoctl<<8 | cmd
}

// Flags of struct dm_ioctl.
const (
	flagReadOnly      = 1 << 0  // DM_READONLY_FLAG
	flagSuspend       = 1 << 1  // DM_SUSPEND_FLAG
	flagStatusTable   = 1 << 4  // DM_STATUS_TABLE_FLAG
	flagActivePresent = 1 << 5  // DM_ACTIVE_PRESENT_FLAG
	flagInactive      = 1 << 6  // DM_INACTIVE_PRESENT_FLAG
	flagBufferFull    = 1 << 8  // DM_BUFFER_FULL_FLAG
	flagSecureData    = 1 << 15 // DM_SECURE_DATA_FLAG
)

// The interface version we speak: the kernel accepts any request whose major
// matches and whose minor is not newer than its own.
var abiVersion = [3]uint32{4, 0, 0}

// header is struct dm_ioctl without its trailing data.
type header struct {
	Version     [3]uint32
	DataSize    uint32
	DataStart   uint32
	TargetCount uint32
	OpenCount   int32
	Flags       uint32
	EventNr     uint32
	Dev         uint64
	Name        string
	UUID        string
}

var ne = binary.NativeEndian

// errMalformed reports a kernel reply this package cannot make sense of.
var errMalformed = errors.New("malformed device-mapper reply")

// marshal writes h followed by data into a buffer of at least size bytes
// (size leaves room for the kernel's reply), setting DataSize and DataStart.
func (h header) marshal(data []byte, size int) ([]byte, error) {
	if len(h.Name) >= nameLen {
		return nil, fmt.Errorf("name %q longer than %d bytes", h.Name, nameLen-1)
	}
	if len(h.UUID) >= uuidLen {
		return nil, fmt.Errorf("uuid %q longer than %d bytes", h.UUID, uuidLen-1)
	}
	size = max(size, headerSize+len(data))
	size = (size + 7) &^ 7
	b := make([]byte, size)
	for i, v := range h.Version {
		ne.PutUint32(b[4*i:], v)
	}
	ne.PutUint32(b[12:], uint32(size))
	ne.PutUint32(b[16:], headerSize)
	ne.PutUint32(b[20:], h.TargetCount)
	ne.PutUint32(b[24:], uint32(h.OpenCount))
	ne.PutUint32(b[28:], h.Flags)
	ne.PutUint32(b[32:], h.EventNr)
	ne.PutUint64(b[40:], h.Dev)
	copy(b[offName:offName+nameLen-1], h.Name)
	copy(b[offUUID:offUUID+uuidLen-1], h.UUID)
	copy(b[headerSize:], data)
	return b, nil
}

// parseHeader reads the struct dm_ioctl at the start of a kernel reply.
func parseHeader(b []byte) (header, error) {
	if len(b) < headerSize {
		return header{}, fmt.Errorf("%w: %d bytes, want at least %d", errMalformed, len(b), headerSize)
	}
	var h header
	for i := range h.Version {
		h.Version[i] = ne.Uint32(b[4*i:])
	}
	h.DataSize = ne.Uint32(b[12:])
	h.DataStart = ne.Uint32(b[16:])
	h.TargetCount = ne.Uint32(b[20:])
	h.OpenCount = int32(ne.Uint32(b[24:]))
	h.Flags = ne.Uint32(b[28:])
	h.EventNr = ne.Uint32(b[32:])
	h.Dev = ne.Uint64(b[40:])
	h.Name = cstring(b[offName : offName+nameLen-1]) // the last byte is the NUL
	h.UUID = cstring(b[offUUID : offUUID+uuidLen-1])
	return h, nil
}

// cstring returns b up to its first NUL.
func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// marshalTargets renders the struct dm_target_spec list of a DM_TABLE_LOAD:
// each spec followed by its NUL-terminated parameters, padded to 8 bytes,
// with next holding the distance to the following spec.
func marshalTargets(lines []TableLine) ([]byte, error) {
	var out []byte
	for i, l := range lines {
		if len(l.Type) == 0 || len(l.Type) >= typeNameLen {
			return nil, fmt.Errorf("target %d: type %q must be 1 to %d bytes", i, l.Type, typeNameLen-1)
		}
		if bytes.IndexByte([]byte(l.Params), 0) >= 0 {
			return nil, fmt.Errorf("target %d (%s): parameters contain a NUL byte", i, l.Type)
		}
		n := (specSize + len(l.Params) + 1 + 7) &^ 7
		spec := make([]byte, n)
		ne.PutUint64(spec[0:], l.Start)
		ne.PutUint64(spec[8:], l.Length)
		ne.PutUint32(spec[20:], uint32(n))
		copy(spec[24:24+typeNameLen-1], l.Type)
		copy(spec[specSize:], l.Params)
		out = append(out, spec...)
	}
	return out, nil
}

// parseTargets reads the target list of a DM_TABLE_STATUS reply: count specs
// starting at data, where each spec's next is its successor's offset from the
// start of data.
func parseTargets(data []byte, count uint32) ([]TableLine, error) {
	// Every spec takes at least specSize bytes, so a count larger than that
	// cannot be honest; checking first bounds the allocation.
	if uint64(count)*specSize > uint64(len(data)) {
		return nil, fmt.Errorf("%w: %d targets do not fit in %d bytes", errMalformed, count, len(data))
	}
	lines := make([]TableLine, 0, count)
	off := 0
	for i := range count {
		if off < 0 || off+specSize > len(data) {
			return nil, fmt.Errorf("%w: target %d at offset %d outside %d bytes", errMalformed, i, off, len(data))
		}
		s := data[off:]
		lines = append(lines, TableLine{
			Start:  ne.Uint64(s[0:]),
			Length: ne.Uint64(s[8:]),
			Type:   cstring(s[24 : 24+typeNameLen]),
			Params: cstring(s[specSize:]),
		})
		next := int(ne.Uint32(s[20:]))
		if i+1 < count && next <= off {
			return nil, fmt.Errorf("%w: target %d: next offset %d does not advance past %d", errMalformed, i, next, off)
		}
		off = next
	}
	return lines, nil
}

// Device names one mapped device, as listed by List.
type Device struct {
	Name string
	Dev  Dev
}

// parseNameList reads the struct dm_name_list chain of a DM_LIST_DEVICES
// reply. A first record with dev 0 means no devices.
func parseNameList(data []byte) ([]Device, error) {
	var devs []Device
	off := 0
	for {
		if off+nameListName > len(data) {
			return nil, fmt.Errorf("%w: name list record at offset %d outside %d bytes", errMalformed, off, len(data))
		}
		r := data[off:]
		dev := ne.Uint64(r[0:])
		if dev == 0 && off == 0 {
			return nil, nil
		}
		devs = append(devs, Device{Name: cstring(r[nameListName:]), Dev: Dev(dev)})
		next := int(ne.Uint32(r[8:]))
		if next == 0 {
			return devs, nil
		}
		if next < nameListName {
			return nil, fmt.Errorf("%w: name list record at offset %d: next %d too small", errMalformed, off, next)
		}
		off += next
	}
}

// Dev is a device number in the kernel's encoding (huge_encode_dev, which
// matches the C library's makedev for all real device numbers).
type Dev uint64

// Major returns the major device number.
func (d Dev) Major() uint32 { return uint32((d>>8)&0xfff | (d>>32)&^0xfff) }

// Minor returns the minor device number.
func (d Dev) Minor() uint32 { return uint32(d&0xff | (d>>12)&^0xff) }

// String returns "major:minor", the form device-mapper tables accept.
func (d Dev) String() string { return fmt.Sprintf("%d:%d", d.Major(), d.Minor()) }
