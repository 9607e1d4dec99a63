// Package nbdconfig reads nbd-parent's configuration: which files to serve
// as which NBD exports, and where to listen (vsock, TCP, unix socket).
//
// A configuration is a small JSON file, extended or replaced by command
// line flags:
//
//	{
//	  "listen": ["vsock://:10809", "unix:///run/enclave/nbd.sock"],
//	  "default_export": "image",
//	  "metrics_addr": "127.0.0.1:9810",
//	  "exports": [
//	    {"name": "image", "path": "/srv/app/rootfs.img", "read_only": true},
//	    {"name": "run", "path": "/srv/app/run.img", "size": "8GiB",
//	     "description": "encrypted run volume", "cids": [16]}
//	  ]
//	}
//
// "cids" (--export ...,cid=N, repeatable) binds an export to the vsock
// peers of these context IDs, the enclaves this parent runs: any other
// peer, TCP and unix socket peers included, is refused it. A
// configuration with bound exports and no vsock listener is invalid.
//
// A read-write export with a size is created sparse on first use and never
// resized afterwards (see nbd.SizeMismatchError). Listen addresses are URLs:
// vsock://:PORT (any local CID), vsock://CID:PORT, tcp://HOST:PORT and
// unix:///ABSOLUTE/PATH.
//
// For an enclave whose run volume key comes from AWS KMS, the daemon also
// forwards a vsock port to the KMS endpoint and serves the instance role's
// credentials:
//
//	"forward": ["vsock://:8000=kms.us-east-1.amazonaws.com:443"],
//	"credentials": ["vsock://:8001"],
//	"region": "us-east-1"
//
// It uses encoding/json rather than a richer format so the daemon needs no
// further dependencies; unknown fields are rejected so typos fail loudly.
package nbdconfig
