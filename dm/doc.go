// Package dm drives the Linux device-mapper through ioctls on
// /dev/mapper/control: it creates, loads, resumes, inspects and removes
// mapped devices, and renders the tables of the three targets the enclave
// needs (verity, crypt and linear).
//
// Why our own: github.com/anatol/devmapper.go, the usual pure-Go client, is
// not obtainable in this build environment, and libdevmapper would need cgo.
// The ioctl ABI is small and stable (include/uapi/linux/dm-ioctl.h, version
// 4), so this package marshals struct dm_ioctl and struct dm_target_spec by
// hand with encoding/binary and issues the ioctls with golang.org/x/sys/unix.
// A test checks the struct layout and ioctl numbers against the kernel
// header with the C compiler when one is installed.
//
// No udev is assumed: enclaves and the integration microVM have none. Create
// passes no udev cookie and makes the /dev/mapper/NAME block node itself with
// mknod when nothing else did; Remove deletes a node it finds there (never a
// udev symlink).
//
// Table rendering and ioctl marshalling are plain Go and build on every OS;
// the ioctl calls (Create, Remove, DeviceInfo, Status, Table, List, Version) are
// Linux only.
package dm
