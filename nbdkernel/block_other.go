//go:build !unix

package nbdkernel

import "errors"

func setBlocking(int) error { return errors.New("not supported on this platform") }
