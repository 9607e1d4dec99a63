package overlay

import (
	"errors"
	"fmt"
	"strings"
)

// ErrBadPath reports a directory name overlayfs mount data cannot carry.
var ErrBadPath = errors.New("overlay: path cannot be passed to overlayfs")

// Options are the directories of an overlay mount.
type Options struct {
	// Lower lists the read-only layers, top-most first.
	Lower []string
	// Upper receives writes; Work is overlayfs's scratch directory and must
	// be an empty directory on the same filesystem as Upper. Both empty
	// makes a read-only overlay.
	Upper, Work string
}

// Data renders the mount data string: "lowerdir=A:B,upperdir=U,workdir=W".
func (o Options) Data() (string, error) {
	if len(o.Lower) == 0 {
		return "", errors.New("overlay: no lower directory")
	}
	if (o.Upper == "") != (o.Work == "") {
		return "", errors.New("overlay: upper and work directories go together")
	}
	for _, p := range append(append([]string{}, o.Lower...), o.Upper, o.Work) {
		if err := checkPath(p); err != nil {
			return "", err
		}
	}
	if o.Upper == "" && len(o.Lower) < 2 {
		return "", errors.New("overlay: a read-only overlay needs at least two lower directories")
	}
	var b strings.Builder
	b.WriteString("lowerdir=")
	b.WriteString(strings.Join(o.Lower, ":"))
	if o.Upper != "" {
		b.WriteString(",upperdir=")
		b.WriteString(o.Upper)
		b.WriteString(",workdir=")
		b.WriteString(o.Work)
	}
	return b.String(), nil
}

// checkPath refuses the characters overlayfs treats as separators or
// escapes in mount data. The empty string is allowed (no upper/work).
func checkPath(p string) error {
	if strings.ContainsAny(p, ",:\\\x00") {
		return fmt.Errorf("%w: %q contains ',', ':', '\\' or NUL", ErrBadPath, p)
	}
	if p != "" && !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: %q is not absolute", ErrBadPath, p)
	}
	return nil
}
