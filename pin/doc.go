// Package pin says where an enclave image pins its root filesystem: the
// names both sides must agree on, imgbuild when it writes the measured
// kernel command line and application ramdisk (package eif) and
// nbd-enclave when it reads them back (package enclave).
//
// It is its own package, with no dependencies, so that the enclave binary
// shares these names and the command line parser with the builder without
// linking the EIF builder.
package pin
