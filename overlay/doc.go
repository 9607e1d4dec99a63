// Package overlay builds the enclave application's root filesystem: an
// overlayfs whose read-only lower layer is the dm-verity-protected image and
// whose upper and work directories live on the encrypted run volume, with
// /dev, /proc and /sys bound into it, and starts the application chrooted
// into it.
//
// Options renders overlayfs mount data and refuses directory names the
// kernel would misparse (commas, colons, backslashes). Mount and Unmount
// wrap mount(2) and umount(2) through golang.org/x/sys/unix; Root tracks the
// overlay and the bind mounts made into it so that Close undoes them in
// reverse order.
//
// # chroot, not pivot_root, and a child rather than exec
//
// The application runs as a child of the mount agent (Root.Command returns
// an exec.Cmd with SysProcAttr.Chroot set), not by replacing the agent with
// execve: the agent must outlive the application to sync, unmount the
// overlay and the volumes below it, remove the device-mapper targets and
// disconnect NBD, so that the run image is left clean. For the same reason
// the agent itself stays in the original root and only the child is
// chrooted: pivot_root would move the agent's own root and leave the old one
// (with /mnt/lower and /mnt/upper) to be unmounted from inside the new tree.
// The enclave runs a single application, which holds no CAP_SYS_CHROOT
// unless its image asks to run as root; the confidentiality boundary is the
// enclave, not the chroot.
//
// The entrypoint is looked up inside the new root (openat2 with
// RESOLVE_IN_ROOT, so absolute symlinks such as /bin -> /usr/bin in the image
// resolve inside it, not on the agent's ramdisk).
package overlay
