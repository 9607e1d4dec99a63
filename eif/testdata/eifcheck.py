#!/usr/bin/env python3
"""Independent EIF checker for eif's tests (python3 standard library only).

Parses an EIF the way aws-nitro-enclaves-image-format's EifReader does,
recomputes the header CRC32 (zlib, IEEE) and PCR0/1/2 (SHA-384 extends),
and prints nitro-cli's build-enclave JSON. Exit status 1 on a CRC mismatch.
"""
import hashlib, json, struct, sys, zlib

data = open(sys.argv[1], "rb").read()
assert data[:4] == b".eif", "bad magic"
version, flags, mem, cpus, _res, nsec = struct.unpack(">HHQQHH", data[4:28])
crc_hdr = struct.unpack(">I", data[544:548])[0]
crc = zlib.crc32(data[:544])
image, boot, app = hashlib.sha384(), hashlib.sha384(), hashlib.sha384()
off, ramdisks = 548, 0
while off + 12 <= len(data):
    typ, _fl, size = struct.unpack(">HHQ", data[off:off + 12])
    body = data[off + 12:off + 12 + size]
    crc = zlib.crc32(data[off:off + 12 + size], crc)
    if typ in (1, 2):  # kernel, cmdline
        image.update(body); boot.update(body)
    elif typ == 3:  # ramdisk
        image.update(body)
        (boot if ramdisks == 0 else app).update(body)
        ramdisks += 1
    off += 12 + size

def extend(h):
    return hashlib.sha384(b"\0" * 48 + h.digest()).hexdigest()

print(json.dumps({"Measurements": {"HashAlgorithm": "Sha384 { ... }", "PCR0": extend(image),
                  "PCR1": extend(boot), "PCR2": extend(app)}}, indent=2))
sys.exit(0 if crc == crc_hdr else 1)
