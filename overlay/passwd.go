package overlay

import (
	"fmt"
	"strconv"
	"strings"
)

// LookupUser resolves an image's user name (or numeric uid) against the
// content of its /etc/passwd, returning the uid and primary gid. A numeric
// uid absent from passwd gets gid 0, as container runtimes do.
func LookupUser(passwd []byte, name string) (uid, gid uint32, err error) {
	id, numErr := strconv.ParseUint(name, 10, 32)
	for _, line := range strings.Split(string(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 4 || (f[0] != name && (numErr != nil || f[2] != name)) {
			continue
		}
		u, err1 := strconv.ParseUint(f[2], 10, 32)
		g, err2 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("bad /etc/passwd line for %q", f[0])
		}
		return uint32(u), uint32(g), nil
	}
	if numErr == nil {
		return uint32(id), 0, nil
	}
	return 0, 0, fmt.Errorf("no user %q in the image's /etc/passwd", name)
}

// LookupGroup resolves a group name (or numeric gid) against the content
// of the image's /etc/group.
func LookupGroup(groups []byte, group string) (uint32, error) {
	if id, err := strconv.ParseUint(group, 10, 32); err == nil {
		return uint32(id), nil
	}
	for _, line := range strings.Split(string(groups), "\n") {
		f := strings.Split(line, ":")
		if len(f) >= 3 && f[0] == group {
			gid, err := strconv.ParseUint(f[2], 10, 32)
			if err != nil {
				return 0, fmt.Errorf("bad /etc/group line for %q", group)
			}
			return uint32(gid), nil
		}
	}
	return 0, fmt.Errorf("no group %q in the image's /etc/group", group)
}
