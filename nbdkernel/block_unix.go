//go:build unix

package nbdkernel

import "syscall"

func setBlocking(fd int) error { return syscall.SetNonblock(fd, false) }
