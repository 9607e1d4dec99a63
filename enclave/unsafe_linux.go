//go:build linux

package enclave

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uintptrOf is the address of b's first byte, for O_DIRECT alignment.
func uintptrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }

// siginfoPid returns si_pid of a SIGCHLD siginfo (offset 16 on 64-bit
// Linux; x/sys/unix keeps the union unexported). Zero means no child was
// waitable.
func siginfoPid(info *unix.Siginfo) int {
	b := (*[128]byte)(unsafe.Pointer(info))
	return int(int32(binary.NativeEndian.Uint32(b[16:20])))
}
