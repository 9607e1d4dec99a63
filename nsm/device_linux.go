//go:build linux

package nsm

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DevicePath is the NSM's character device in a Nitro Enclave.
const DevicePath = "/dev/nsm"

// ioctlRequest is NSM_IOCTL_REQUEST: _IOWR(0x0A, 0, struct nsm_message),
// the message being two iovecs (request, response), 32 bytes on the 64-bit
// architectures Nitro runs (x86_64, aarch64): 0xc0200a00. _IOWR puts the
// direction (read|write = 3) in bits 30-31 and the size in bits 16-29.
const ioctlRequest = 3<<30 | uint32(unsafe.Sizeof(message{}))<<16 | 0x0A<<8

// message is struct nsm_message of the kernel driver: the CBOR request and
// a buffer the driver fills with the CBOR response, shrinking its length.
type message struct {
	request, response unix.Iovec
}

// Device is an open /dev/nsm.
type Device struct {
	f *os.File
}

// Open opens the NSM device.
func Open() (*Device, error) {
	f, err := os.OpenFile(DevicePath, os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("nsm: %w", err)
	}
	return &Device{f: f}, nil
}

// Close closes the device.
func (d *Device) Close() error { return d.f.Close() }

// Attest asks the NSM for an attestation document carrying r. The ioctl
// itself cannot be interrupted; ctx is checked before it starts.
func (d *Device) Attest(ctx context.Context, r Request) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	req, err := encodeRequest(r)
	if err != nil {
		return nil, err
	}
	resp, err := d.call(req)
	if err != nil {
		return nil, err
	}
	return decodeResponse(resp)
}

// call runs one NSM_IOCTL_REQUEST and returns the response bytes.
func (d *Device) call(req []byte) ([]byte, error) {
	resp := make([]byte, maxResponseSize)
	var msg message
	msg.request.Base = &req[0]
	msg.request.SetLen(len(req))
	msg.response.Base = &resp[0]
	msg.response.SetLen(len(resp))
	rc, err := d.f.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("nsm: %w", err)
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(ioctlRequest), uintptr(unsafe.Pointer(&msg)))
	}); err != nil {
		return nil, fmt.Errorf("nsm: %w", err)
	}
	runtime.KeepAlive(req)
	runtime.KeepAlive(resp)
	if errno != 0 {
		return nil, fmt.Errorf("nsm: ioctl NSM_IOCTL_REQUEST: %w", errno)
	}
	n := int(msg.response.Len)
	if n > len(resp) {
		return nil, fmt.Errorf("%w: driver reported %d response bytes", ErrDevice, n)
	}
	return resp[:n], nil
}
