//go:build unix

package nbdkernel

import "golang.org/x/sys/unix"

func fcntlFlags(fd int) (int, error) { return unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0) }
