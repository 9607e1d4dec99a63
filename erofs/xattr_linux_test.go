//go:build linux

package erofs

import "golang.org/x/sys/unix"

func setUserXattr(path, name, value string) error {
	return unix.Lsetxattr(path, name, []byte(value), 0)
}
