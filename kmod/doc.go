// Package kmod finds the kernel modules nbd-enclave needs in a
// /lib/modules/KVER tree, orders them so that every module comes after the
// modules it depends on, and (on Linux) loads them in that order.
//
// Neither of AWS's enclave kernels builds in what the enclave needs: the
// 4.14 kernel nitro-cli ships and the 6.6 one from
// aws-nitro-enclaves-sdk-bootstrap lack NBD, device-mapper (dm-verity,
// dm-crypt) and EROFS, and the 6.6 one builds the NSM driver as nsm.ko.
// imgbuild --kernel-modules therefore copies the modules from a kernel's
// module tree (Debian's linux-image package, or one built with
// kernel/enclave.config) into the EIF's bootstrap ramdisk, with a load
// order file (OrderPath); nbd-enclave, as PID 1, loads them before it
// touches NBD, vsock or device-mapper.
//
// # Build side (any OS)
//
// Open reads modules.dep and modules.builtin (both bounded: they are input
// to the build) and Resolve turns module names into the ordered closure
// of module files, skipping built-in modules. Names match with '-' and '_'
// treated alike, as the kernel does. A name with a trailing '?' is
// optional (nsm? — only the 6.6 enclave kernel has it). Modules compressed
// with xz, zstd or gzip (.ko.xz, .ko.zst, .ko.gz) are decompressed at build
// time (ReadModule) and stored as plain .ko, so the enclave kernel needs no
// CONFIG_MODULE_DECOMPRESS; any other suffix is refused. Soft dependencies
// (modules.softdep) are not followed: list such modules (crc32c_generic
// for ext4) by name.
//
// # Enclave side (Linux)
//
// Load reads OrderPath under a root and loads each listed module with
// finit_module(2). EEXIST (already loaded, or built in after all) is not
// an error; any other error names the module.
//
// # Why not u-root's pkg/kmodule
//
// u-root v0.16.0's pkg/kmodule was evaluated first. It loads a named
// module with its dependencies from a root directory, but it does not fit:
// it is Linux-only, and the build side must resolve on any OS; it exports
// no resolution, only loading (its dry-run callback is called from
// concurrent goroutines, so the order it reports is not deterministic and
// cannot be written into a measured ramdisk); it loads dependencies in
// parallel; its modules.dep parser indexes past the end of a line without
// a ':' (a panic on malformed input) and bounds neither sizes nor counts;
// and it decompresses modules in the enclave, where we want only
// finit_module on plain files. What we need — a bounded parser, a
// deterministic topological order, and a loop over finit_module — is
// small enough to own.
package kmod
