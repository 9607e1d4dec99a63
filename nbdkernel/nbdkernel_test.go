package nbdkernel

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
)

var nbdFamily = genetlink.Family{ID: 0x24, Version: 1, Name: familyName}

// kernelRequest is an NBD generic netlink request as the kernel parses it.
type kernelRequest struct {
	Command  uint8
	Attrs    map[uint16]uint64 // scalar attributes
	Backend  string
	Sockets  []uint32
	HasIndex bool
}

// parseRequest decodes a request the way nbd_genl_* do, failing the test on
// anything the kernel's policy would reject.
func parseRequest(t *testing.T, m genetlink.Message) kernelRequest {
	t.Helper()
	r := kernelRequest{Command: m.Header.Command, Attrs: map[uint16]uint64{}}
	attrs, err := netlink.UnmarshalAttributes(m.Data)
	if err != nil {
		t.Fatalf("request attributes: %v", err)
	}
	for _, a := range attrs {
		switch a.Type & ^uint16(netlink.Nested) {
		case attrIndex:
			if len(a.Data) != 4 {
				t.Fatalf("NBD_ATTR_INDEX is %d bytes, policy wants u32", len(a.Data))
			}
			r.HasIndex = true
			r.Attrs[attrIndex] = uint64(binary.NativeEndian.Uint32(a.Data))
		case attrSizeBytes, attrBlockSizeBytes, attrTimeout, attrServerFlags, attrClientFlags, attrDeadConnTimeout:
			if len(a.Data) != 8 {
				t.Fatalf("attribute %d is %d bytes, policy wants u64", a.Type, len(a.Data))
			}
			r.Attrs[a.Type] = binary.NativeEndian.Uint64(a.Data)
		case attrBackendID:
			r.Backend = string(a.Data[:len(a.Data)-1])
		case attrSockets:
			if a.Type&netlink.Nested == 0 {
				t.Fatal("NBD_ATTR_SOCKETS without NLA_F_NESTED")
			}
			items, err := netlink.UnmarshalAttributes(a.Data)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range items {
				if it.Type&^uint16(netlink.Nested) != sockItem {
					t.Fatalf("socket list holds attribute %d", it.Type)
				}
				fds, err := netlink.UnmarshalAttributes(it.Data)
				if err != nil || len(fds) != 1 || fds[0].Type != sockFD || len(fds[0].Data) != 4 {
					t.Fatalf("NBD_SOCK_ITEM %x: %v", it.Data, err)
				}
				r.Sockets = append(r.Sockets, binary.NativeEndian.Uint32(fds[0].Data))
			}
		default:
			t.Fatalf("unexpected attribute %d", a.Type)
		}
	}
	return r
}

func reply(t *testing.T, fn func(ae *netlink.AttributeEncoder)) []genetlink.Message {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	fn(ae)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return []genetlink.Message{{Header: genetlink.Header{Command: cmdConnect, Version: 1}, Data: b}}
}

func dialFake(t *testing.T, fn genltest.Func) *Conn {
	t.Helper()
	c, err := NewConn(genltest.Dial(genltest.ServeFamily(nbdFamily, fn)))
	if err != nil {
		t.Fatalf("NewConn: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestConnect(t *testing.T) {
	tests := []struct {
		name      string
		cfg       Config
		want      kernelRequest
		replyIdx  uint32
		wantIndex uint32
	}{
		{
			name: "any device, enclave defaults",
			cfg: Config{Index: AnyIndex, Size: 1 << 30, ServerFlags: 0x3, Sockets: []int{7},
				Timeout: DefaultTimeout, DeadConnTimeout: DefaultDeadConnTimeout, BackendID: "image"},
			want: kernelRequest{Command: cmdConnect, Attrs: map[uint16]uint64{
				attrSizeBytes: 1 << 30, attrBlockSizeBytes: 4096, attrServerFlags: 3, attrClientFlags: 0,
				attrTimeout: 30, attrDeadConnTimeout: 120,
			}, Backend: "image", Sockets: []uint32{7}},
			replyIdx: 3, wantIndex: 3,
		},
		{
			name: "fixed device, two sockets, sub-second timeout rounds up",
			cfg: Config{Index: 5, Size: 4096, BlockSize: 512, Sockets: []int{9, 10},
				Timeout: 200 * time.Millisecond, ClientFlags: ClientDestroyOnDisconnect},
			want: kernelRequest{Command: cmdConnect, HasIndex: true, Attrs: map[uint16]uint64{
				attrIndex: 5, attrSizeBytes: 4096, attrBlockSizeBytes: 512, attrServerFlags: 0,
				attrClientFlags: 1, attrTimeout: 1,
			}, Sockets: []uint32{9, 10}},
			replyIdx: 5, wantIndex: 5,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialFake(t, genltest.CheckRequest(nbdFamily.ID, cmdConnect, netlink.Request,
				func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
					got := parseRequest(t, greq)
					if diff := cmp.Diff(tt.want, got); diff != "" {
						t.Errorf("request (-want +got):\n%s", diff)
					}
					if greq.Header.Version != 1 {
						t.Errorf("genl version %d", greq.Header.Version)
					}
					return reply(t, func(ae *netlink.AttributeEncoder) { ae.Uint32(attrIndex, tt.replyIdx) }), nil
				}))
			idx, err := c.Connect(context.Background(), tt.cfg)
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			if idx != tt.wantIndex {
				t.Fatalf("index %d, want %d", idx, tt.wantIndex)
			}
		})
	}
}

func TestConnectErrors(t *testing.T) {
	kernelBusy := func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(syscall.EBUSY))
	}
	noIndex := func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return reply(t, func(ae *netlink.AttributeEncoder) { ae.Uint64(attrSizeBytes, 1) }), nil
	}
	// never fails the test: the request must be refused before it is sent.
	never := func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		t.Error("a request with an impossible geometry reached the kernel")
		return nil, genltest.Error(int(syscall.EINVAL))
	}
	tests := []struct {
		name   string
		cfg    Config
		kernel genltest.Func
		is     error
	}{
		{"zero size", Config{Index: AnyIndex, Sockets: []int{3}}, noIndex, nil},
		{"no sockets", Config{Index: AnyIndex, Size: 1}, noIndex, nil},
		{"bad block size", Config{Index: AnyIndex, Size: 1, BlockSize: 1000, Sockets: []int{3}}, noIndex, nil},
		{"huge block size", Config{Index: AnyIndex, Size: 1 << 40, BlockSize: 1 << 31, Sockets: []int{3}}, never, nil},
		{"size above 2^63", Config{Index: AnyIndex, Size: 1<<63 + 4096, Sockets: []int{3}}, never, nil},
		{"size 2^64-1", Config{Index: AnyIndex, Size: 1<<64 - 1, Sockets: []int{3}}, never, nil},
		{"kernel refuses", Config{Index: 0, Size: 1, Sockets: []int{3}}, kernelBusy, syscall.EBUSY},
		{"reply without index", Config{Index: AnyIndex, Size: 1, Sockets: []int{3}}, noIndex, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialFake(t, tt.kernel)
			_, err := c.Connect(context.Background(), tt.cfg)
			if err == nil {
				t.Fatal("Connect succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Connect error %v, want %v", err, tt.is)
			}
		})
	}
}

func TestReconfigureDisconnect(t *testing.T) {
	var got []kernelRequest
	c := dialFake(t, func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		if nreq.Header.Length == 0 {
			// genltest asks again when a request had no reply: the
			// acknowledgement carries nothing.
			return nil, io.EOF
		}
		if nreq.Header.Flags != netlink.Request|netlink.Acknowledge {
			t.Errorf("command %d flags %v, want request|ack", greq.Header.Command, nreq.Header.Flags)
		}
		got = append(got, parseRequest(t, greq))
		return nil, nil
	})
	ctx := context.Background()
	if err := c.Reconfigure(ctx, 2, Config{Sockets: []int{11}, DeadConnTimeout: time.Minute, BackendID: "run"}); err != nil {
		t.Fatalf("Reconfigure: %v", err)
	}
	if err := c.Disconnect(ctx, 2); err != nil {
		t.Fatalf("Disconnect: %v", err)
	}
	want := []kernelRequest{
		{Command: cmdReconfigure, HasIndex: true, Attrs: map[uint16]uint64{attrIndex: 2, attrDeadConnTimeout: 60}, Backend: "run", Sockets: []uint32{11}},
		{Command: cmdDisconnect, HasIndex: true, Attrs: map[uint16]uint64{attrIndex: 2}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("requests (-want +got):\n%s", diff)
	}
}

func TestStatus(t *testing.T) {
	c := dialFake(t, genltest.CheckRequest(nbdFamily.ID, cmdStatus, netlink.Request,
		func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
			r := parseRequest(t, greq)
			return reply(t, func(ae *netlink.AttributeEncoder) {
				ae.Nested(attrDeviceList, func(list *netlink.AttributeEncoder) error {
					for _, d := range []DeviceStatus{{0, true}, {1, false}, {7, true}} {
						if r.HasIndex && uint64(d.Index) != r.Attrs[attrIndex] {
							continue
						}
						list.Nested(deviceItem, func(item *netlink.AttributeEncoder) error {
							item.Uint32(deviceIndex, d.Index)
							var v uint8
							if d.Connected {
								v = 1
							}
							item.Uint8(deviceConnected, v)
							return nil
						})
					}
					return nil
				})
			}), nil
		}))
	tests := []struct {
		index int
		want  []DeviceStatus
	}{
		{AnyIndex, []DeviceStatus{{0, true}, {1, false}, {7, true}}},
		{7, []DeviceStatus{{7, true}}},
	}
	for _, tt := range tests {
		got, err := c.Status(context.Background(), tt.index)
		if err != nil {
			t.Fatalf("Status(%d): %v", tt.index, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Fatalf("Status(%d) (-want +got):\n%s", tt.index, diff)
		}
	}
	if p := (DeviceStatus{Index: 7}).Path(); p != "/dev/nbd7" {
		t.Fatalf("Path = %q", p)
	}
}

func TestNoFamily(t *testing.T) {
	c := genltest.Dial(func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(syscall.ENOENT))
	})
	if _, err := NewConn(c); !errors.Is(err, ErrNotSupported) {
		t.Fatalf("NewConn without nbd family: %v, want ErrNotSupported", err)
	}
}

func TestContextCancelled(t *testing.T) {
	c := dialFake(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		t.Error("request sent despite a cancelled context")
		return nil, nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Disconnect(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Disconnect: %v, want context.Canceled", err)
	}
}

// TestConnectConns passes real socket descriptors: they must be the
// connections' own descriptors, switched to blocking mode.
func TestConnectConns(t *testing.T) {
	a, b, err := socketPair()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	defer b.Close()
	var wantFDs []uint32
	for _, c := range []*net.UnixConn{a, b} {
		rc, _ := c.SyscallConn()
		rc.Control(func(fd uintptr) { wantFDs = append(wantFDs, uint32(fd)) })
	}
	c := dialFake(t, func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
		r := parseRequest(t, greq)
		if diff := cmp.Diff(wantFDs, r.Sockets); diff != "" {
			t.Errorf("sockets (-want +got):\n%s", diff)
		}
		for _, fd := range r.Sockets {
			fl, err := fcntlFlags(int(fd))
			if err != nil || fl&syscall.O_NONBLOCK != 0 {
				t.Errorf("socket %d flags %#x, %v: want blocking", fd, fl, err)
			}
		}
		return reply(t, func(ae *netlink.AttributeEncoder) { ae.Uint32(attrIndex, 0) }), nil
	})
	if _, err := c.ConnectConns(context.Background(), Config{Index: AnyIndex, Size: 4096}, a, b); err != nil {
		t.Fatalf("ConnectConns: %v", err)
	}
}

func socketPair() (*net.UnixConn, *net.UnixConn, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		return nil, nil, err
	}
	var conns [2]*net.UnixConn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			return nil, nil, err
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1], nil
}

// FuzzDecodeStatus feeds arbitrary reply attributes to the status decoder.
func FuzzDecodeStatus(f *testing.F) {
	ae := netlink.NewAttributeEncoder()
	ae.Nested(attrDeviceList, func(l *netlink.AttributeEncoder) error {
		l.Nested(deviceItem, func(i *netlink.AttributeEncoder) error {
			i.Uint32(deviceIndex, 1)
			i.Uint8(deviceConnected, 1)
			return nil
		})
		return nil
	})
	b, _ := ae.Encode()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeStatus(b)
		_, _, _ = decodeIndex(b)
	})
}
