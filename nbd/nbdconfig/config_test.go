package nbdconfig

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"4096", 4096, true}, {"1K", 1 << 10, true}, {"8M", 8 << 20, true},
		{"8MiB", 8 << 20, true}, {"2G", 2 << 30, true}, {"2GB", 2 << 30, true}, {"1T", 1 << 40, true},
		{" 3g ", 3 << 30, true}, {"", 0, false}, {"-1", 0, false}, {"1.5G", 0, false},
		{"G", 0, false}, {"1X", 0, false}, {"9999999999T", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseExport(t *testing.T) {
	tests := []struct {
		in   string
		want Export
		ok   bool
	}{
		{"image=/srv/rootfs.img,ro", Export{Name: "image", Path: "/srv/rootfs.img", ReadOnly: true}, true},
		{"run=/srv/run.img,size=8G,desc=run volume", Export{Name: "run", Path: "/srv/run.img", Size: 8 << 30, Description: "run volume"}, true},
		{"run=/srv/run.img", Export{Name: "run", Path: "/srv/run.img"}, true},
		{"=/x", Export{}, false},
		{"noequals", Export{}, false},
		{"a=/x,size=lots", Export{}, false},
		{"a=/x,bogus", Export{}, false},
		{"run=/srv/run.img,cid=16", Export{Name: "run", Path: "/srv/run.img", CIDs: []uint32{16}}, true},
		{"run=/srv/run.img,cid=16,size=1G,cid=17", Export{Name: "run", Path: "/srv/run.img", Size: 1 << 30, CIDs: []uint32{16, 17}}, true},
		{"run=/srv/run.img,cid=", Export{}, false},
		{"run=/srv/run.img,cid=-1", Export{}, false},
		{"run=/srv/run.img,cid=3+5", Export{}, false},
		{"run=/srv/run.img,cid=4294967296", Export{}, false},
	}
	for _, tt := range tests {
		got, err := ParseExport(tt.in)
		if (err == nil) != tt.ok || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseExport(%q) = %+v, %v; want %+v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseListen(t *testing.T) {
	tests := []struct {
		in   string
		want Addr
		ok   bool
	}{
		{"vsock://:10809", Addr{Network: "vsock", Port: 10809}, true},
		{"vsock://3:5000", Addr{Network: "vsock", CID: 3, Port: 5000}, true},
		{"tcp://127.0.0.1:10809", Addr{Network: "tcp", Address: "127.0.0.1:10809"}, true},
		{"tcp://[::1]:0", Addr{Network: "tcp", Address: "[::1]:0"}, true},
		{"unix:///run/nbd.sock", Addr{Network: "unix", Address: "/run/nbd.sock"}, true},
		{"unix://relative/x", Addr{}, false},
		{"tcp://host", Addr{}, false},
		{"vsock://x:1", Addr{}, false},
		{"vsock://:port", Addr{}, false},
		{"udp://:1", Addr{}, false},
		{"tcp://:1?x=y", Addr{}, false},
		{"10809", Addr{}, false},
	}
	for _, tt := range tests {
		got, err := ParseListen(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseListen(%q) = %+v, %v; want %+v, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), tt.in)
		}
	}
}

func TestParseCredentials(t *testing.T) {
	tests := []struct {
		in   string
		want CredentialsListen
		err  string
	}{
		{"vsock://:8001", CredentialsListen{Listen: Addr{Network: "vsock", Port: 8001}}, ""},
		{"vsock://:8001?cid=16", CredentialsListen{Listen: Addr{Network: "vsock", Port: 8001}, PeerCID: 16}, ""},
		{"vsock://3:8001?cid=4294967295", CredentialsListen{Listen: Addr{Network: "vsock", CID: 3, Port: 8001}, PeerCID: 4294967295}, ""},
		{"unix:///run/enclave/creds.sock", CredentialsListen{Listen: Addr{Network: "unix", Address: "/run/enclave/creds.sock"}}, ""},
		{"tcp://127.0.0.1:8001", CredentialsListen{}, "never served over tcp"},
		{"tcp://127.0.0.1:8001?cid=16", CredentialsListen{}, "never served over tcp"},
		{"unix:///run/c.sock?cid=16", CredentialsListen{}, "vsock only"},
		{"vsock://:8001?cid=0", CredentialsListen{}, "non-zero number"},
		{"vsock://:8001?cid=x", CredentialsListen{}, "non-zero number"},
		{"vsock://:8001?cid=4294967296", CredentialsListen{}, "non-zero number"},
		{"vsock://:8001?cid=16&cid=17", CredentialsListen{}, "one ?cid=N"},
		{"vsock://:8001?peer=16", CredentialsListen{}, "unknown option"},
		{"vsock://:8001?cid=16#x", CredentialsListen{}, "non-zero number"},
		{"http://:1", CredentialsListen{}, "scheme"},
	}
	for _, tt := range tests {
		checkParse(t, "ParseCredentials", ParseCredentials, tt.in, tt.want, tt.err)
	}
}

// checkParse checks parse(in) against want, or an error containing errSub
// when errSub is not empty.
func checkParse[T comparable](t *testing.T, name string, parse func(string) (T, error), in string, want T, errSub string) {
	t.Helper()
	got, err := parse(in)
	if errSub != "" {
		if err == nil || !strings.Contains(err.Error(), errSub) {
			t.Errorf("%s(%q) = %+v, %v; want error containing %q", name, in, got, err, errSub)
		}
		return
	}
	if err != nil || got != want {
		t.Errorf("%s(%q) = %+v, %v; want %+v", name, in, got, err, want)
	}
}

func TestParseForward(t *testing.T) {
	tests := []struct {
		in   string
		want Forward
		err  string
	}{
		{"vsock://:8000=kms.us-east-1.amazonaws.com:443", Forward{Addr{Network: "vsock", Port: 8000}, "kms.us-east-1.amazonaws.com:443"}, ""},
		{"unix:///run/kms.sock=127.0.0.1:8443", Forward{Addr{Network: "unix", Address: "/run/kms.sock"}, "127.0.0.1:8443"}, ""},
		{"tcp://127.0.0.1:8000=[::1]:443", Forward{Addr{Network: "tcp", Address: "127.0.0.1:8000"}, "[::1]:443"}, ""},
		{"vsock://:8000", Forward{}, "LISTEN=HOST:PORT"},
		{"vsock://:8000=kms.us-east-1.amazonaws.com", Forward{}, "want HOST:PORT"},
		{"vsock://:8000=:443", Forward{}, "want HOST:PORT"},
		{"vsock://:8000=host:0", Forward{}, "want HOST:PORT"},
		{"vsock://:8000=host:https", Forward{}, "want HOST:PORT"},
		{"udp://:8000=host:443", Forward{}, "scheme"},
	}
	for _, tt := range tests {
		checkParse(t, "ParseForward", ParseForward, tt.in, tt.want, tt.err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := `{
	  "listen": ["vsock://:10809", "unix:///run/enclave/nbd.sock"],
	  "default_export": "image",
	  "metrics_addr": "127.0.0.1:9810",
	  "exports": [
	    {"name": "image", "path": "/srv/app/rootfs.img", "read_only": true},
	    {"name": "run", "path": "/srv/app/run.img", "size": "8GiB", "description": "run volume"},
	    {"name": "n", "path": "/srv/n", "size": 4096, "cids": [16, 17]}
	  ]
	}`
	want := &Config{
		Listen:        []string{"vsock://:10809", "unix:///run/enclave/nbd.sock"},
		DefaultExport: "image",
		MetricsAddr:   "127.0.0.1:9810",
		Exports: []Export{
			{Name: "image", Path: "/srv/app/rootfs.img", ReadOnly: true},
			{Name: "run", Path: "/srv/app/run.img", Size: 8 << 30, Description: "run volume"},
			{Name: "n", Path: "/srv/n", Size: 4096, CIDs: []uint32{16, 17}},
		},
	}
	tests := []struct {
		name, json string
		want       *Config
		loadErr    string
		validErr   string
	}{
		{"good", good, want, "", ""},
		{"unknown field", `{"listen":[],"exports":[],"lsiten":[]}`, nil, "unknown field", ""},
		{"trailing", `{} {}`, nil, "trailing", ""},
		{"bad size", `{"exports":[{"name":"a","path":"/a","size":"big"}]}`, nil, "bad size", ""},
		{"no exports", `{"listen":["tcp://:1"]}`, nil, "", "no exports"},
		{"no listen", `{"exports":[{"name":"a","path":"/a"}]}`, nil, "", "no listen"},
		{"duplicate", `{"listen":["tcp://:1"],"exports":[{"name":"a","path":"/a"},{"name":"a","path":"/b"}]}`, nil, "", "twice"},
		{"no path", `{"listen":["tcp://:1"],"exports":[{"name":"a"}]}`, nil, "", "no path"},
		{"bad default", `{"listen":["tcp://:1"],"default_export":"b","exports":[{"name":"a","path":"/a"}]}`, nil, "", "default export"},
		{"bad cid", `{"exports":[{"name":"a","path":"/a","cids":[-1]}]}`, nil, "cannot unmarshal", ""},
		{"cid any", `{"listen":["vsock://:1"],"exports":[{"name":"a","path":"/a","cids":[4294967295]}]}`, nil, "", "VMADDR_CID_ANY"},
		{"cid without vsock", `{"listen":["tcp://:1","unix:///x"],"exports":[{"name":"a","path":"/a","cids":[16]}]}`, nil, "", "no vsock listener"},
		{"bad listen", `{"listen":["udp://:1"],"exports":[{"name":"a","path":"/a"}]}`, nil, "", "scheme"},
		{"kms", `{"listen":["vsock://:10809"],"exports":[{"name":"a","path":"/a"}],"forward":["vsock://:8000=kms.us-east-1.amazonaws.com:443"],"credentials":["vsock://:8001"],"region":"us-east-1"}`,
			&Config{Listen: []string{"vsock://:10809"}, Exports: []Export{{Name: "a", Path: "/a"}}, Forward: []string{"vsock://:8000=kms.us-east-1.amazonaws.com:443"}, Credentials: []string{"vsock://:8001"}, Region: "us-east-1"}, "", ""},
		{"bad forward", `{"listen":["tcp://:1"],"exports":[{"name":"a","path":"/a"}],"forward":["vsock://:8000"]}`, nil, "", "LISTEN=HOST:PORT"},
		{"bad credentials", `{"listen":["tcp://:1"],"exports":[{"name":"a","path":"/a"}],"credentials":["http://:1"]}`, nil, "", "scheme"},
		{"tcp credentials", `{"listen":["tcp://:1"],"exports":[{"name":"a","path":"/a"}],"credentials":["tcp://127.0.0.1:8001"]}`, nil, "", "never served over tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name+".json")
			os.WriteFile(p, []byte(tt.json), 0o600)
			c, err := Load(p)
			if tt.loadErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.loadErr) {
					t.Fatalf("Load: %v, want error containing %q", err, tt.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			verr := c.Validate()
			if tt.validErr != "" {
				if verr == nil || !strings.Contains(verr.Error(), tt.validErr) {
					t.Fatalf("Validate: %v, want error containing %q", verr, tt.validErr)
				}
				return
			}
			if verr != nil {
				t.Fatal(verr)
			}
			if !reflect.DeepEqual(c, tt.want) {
				t.Fatalf("got %+v\nwant %+v", c, tt.want)
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "missing.json")); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("missing file: %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok || u.Unwrap() == nil {
			return err
		}
		err = u.Unwrap()
	}
}

func TestListenUnixStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	a := Addr{Network: "unix", Address: path}
	ctx := context.Background()
	l, err := Listen(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	// A live socket is not stolen.
	if _, err := Listen(ctx, a); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	// A stale one (left behind without unlinking) is replaced.
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	l2, err := Listen(ctx, a)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l2.Close()
}
