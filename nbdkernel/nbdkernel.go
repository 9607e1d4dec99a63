package nbdkernel

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"syscall"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// Generic netlink family, commands and attributes of nbd-netlink.h.
const (
	familyName = "nbd"
	// MulticastGroup is the group on which the kernel announces
	// NBD_CMD_LINK_DEAD.
	MulticastGroup = "nbd_mc_group"

	cmdConnect     = 1
	cmdDisconnect  = 2
	cmdReconfigure = 3
	cmdLinkDead    = 4
	cmdStatus      = 5

	attrIndex           = 1
	attrSizeBytes       = 2
	attrBlockSizeBytes  = 3
	attrTimeout         = 4
	attrServerFlags     = 5
	attrClientFlags     = 6
	attrSockets         = 7
	attrDeadConnTimeout = 8
	attrDeviceList      = 9
	attrBackendID       = 10

	sockItem = 1
	sockFD   = 1

	deviceItem      = 1
	deviceIndex     = 1
	deviceConnected = 2
)

// Client flags (NBD_CFLAG_*).
const (
	// ClientDestroyOnDisconnect removes the device node once it is
	// disconnected.
	ClientDestroyOnDisconnect uint64 = 1 << 0
	// ClientDisconnectOnClose disconnects when the last opener closes the
	// device. Do not use it under device-mapper targets that close and
	// reopen the device.
	ClientDisconnectOnClose uint64 = 1 << 1
)

// Defaults the enclave agent uses; see the package documentation.
const (
	DefaultTimeout         = 30 * time.Second
	DefaultDeadConnTimeout = 120 * time.Second
	DefaultBlockSize       = 4096
)

// AnyIndex asks NBD_CMD_CONNECT to pick (or create) a free device.
const AnyIndex = -1

// ErrNotSupported reports that the kernel has no "nbd" generic netlink
// family: the nbd driver is not built in or loaded.
var ErrNotSupported = errors.New("nbdkernel: kernel has no nbd generic netlink family (nbd driver not loaded)")

// Config is what NBD_CMD_CONNECT and NBD_CMD_RECONFIGURE carry.
type Config struct {
	// Index is the device number N of /dev/nbdN, or AnyIndex.
	Index int
	// Size is the export size in bytes (NBD_ATTR_SIZE_BYTES).
	Size uint64
	// BlockSize is the logical block size, a power of two from 512 to the
	// page size; zero means DefaultBlockSize.
	BlockSize uint64
	// ServerFlags are the export's transmission flags from the handshake
	// (NBD_FLAG_*); NBD_FLAG_READ_ONLY makes the device read-only.
	ServerFlags uint64
	// ClientFlags are NBD_CFLAG_* values.
	ClientFlags uint64
	// Timeout is the per-request timeout; zero leaves the kernel default.
	Timeout time.Duration
	// DeadConnTimeout is how long requests wait for a reconnect after the
	// connection died; zero fails them at once.
	DeadConnTimeout time.Duration
	// Sockets are file descriptors of connected sockets in the transmission
	// phase, one per connection (several only with NBD_FLAG_CAN_MULTI_CONN).
	Sockets []int
	// BackendID, when set, is recorded by the kernel (in
	// /sys/block/nbdN/backend) to identify the export. Reconfigure must
	// then pass the same value.
	BackendID string
}

// DeviceStatus is one entry of NBD_CMD_STATUS.
type DeviceStatus struct {
	Index     uint32
	Connected bool
}

// Path returns the device node of the device.
func (d DeviceStatus) Path() string { return DevicePath(d.Index) }

// DevicePath returns /dev/nbdN for index N.
func DevicePath(index uint32) string { return fmt.Sprintf("/dev/nbd%d", index) }

// Conn is a generic netlink connection to the kernel NBD driver.
type Conn struct {
	c      *genetlink.Conn
	family genetlink.Family
}

// Dial opens a generic netlink socket and resolves the "nbd" family. It
// returns ErrNotSupported when the nbd driver is absent.
func Dial() (*Conn, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("nbdkernel: opening generic netlink socket: %w", err)
	}
	conn, err := NewConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return conn, nil
}

// NewConn uses an existing generic netlink connection (tests pass one from
// genltest). It takes ownership of c.
func NewConn(c *genetlink.Conn) (*Conn, error) {
	f, err := c.GetFamily(familyName)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotSupported
		}
		return nil, fmt.Errorf("nbdkernel: resolving generic netlink family %q: %w", familyName, err)
	}
	return &Conn{c: c, family: f}, nil
}

// Close closes the netlink socket. Devices stay connected.
func (c *Conn) Close() error { return c.c.Close() }

// Connect attaches cfg.Sockets to a device and returns its index.
func (c *Conn) Connect(ctx context.Context, cfg Config) (uint32, error) {
	if cfg.Size == 0 {
		return 0, errors.New("nbdkernel: connect: export size is zero")
	}
	attrs, err := encodeConfig(cfg, true)
	if err != nil {
		return 0, err
	}
	msgs, err := c.execute(ctx, cmdConnect, attrs, netlink.Request)
	if err != nil {
		return 0, fmt.Errorf("nbdkernel: NBD_CMD_CONNECT %s: %w", indexName(cfg.Index), err)
	}
	for _, m := range msgs {
		idx, ok, err := decodeIndex(m.Data)
		if err != nil {
			return 0, fmt.Errorf("nbdkernel: NBD_CMD_CONNECT reply: %w", err)
		}
		if ok {
			return idx, nil
		}
	}
	return 0, errors.New("nbdkernel: NBD_CMD_CONNECT reply carries no NBD_ATTR_INDEX")
}

// Reconfigure gives device index new sockets to replace dead connections,
// and updates its timeouts and client flags when set. Size and BlockSize
// are ignored by the kernel on reconfigure.
func (c *Conn) Reconfigure(ctx context.Context, index uint32, cfg Config) error {
	cfg.Index = int(index)
	attrs, err := encodeConfig(cfg, false)
	if err != nil {
		return err
	}
	if _, err := c.execute(ctx, cmdReconfigure, attrs, netlink.Request|netlink.Acknowledge); err != nil {
		return fmt.Errorf("nbdkernel: NBD_CMD_RECONFIGURE %s: %w", DevicePath(index), err)
	}
	return nil
}

// Disconnect detaches device index from its server. Outstanding requests
// fail; the caller must have unmounted everything above it.
func (c *Conn) Disconnect(ctx context.Context, index uint32) error {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrIndex, index)
	attrs, err := ae.Encode()
	if err != nil {
		return fmt.Errorf("nbdkernel: encoding NBD_CMD_DISCONNECT: %w", err)
	}
	if _, err := c.execute(ctx, cmdDisconnect, attrs, netlink.Request|netlink.Acknowledge); err != nil {
		return fmt.Errorf("nbdkernel: NBD_CMD_DISCONNECT %s: %w", DevicePath(index), err)
	}
	return nil
}

// Status reports the state of device index, or of every device when index
// is AnyIndex.
func (c *Conn) Status(ctx context.Context, index int) ([]DeviceStatus, error) {
	var attrs []byte
	if index >= 0 {
		ae := netlink.NewAttributeEncoder()
		ae.Uint32(attrIndex, uint32(index))
		var err error
		if attrs, err = ae.Encode(); err != nil {
			return nil, fmt.Errorf("nbdkernel: encoding NBD_CMD_STATUS: %w", err)
		}
	}
	msgs, err := c.execute(ctx, cmdStatus, attrs, netlink.Request)
	if err != nil {
		return nil, fmt.Errorf("nbdkernel: NBD_CMD_STATUS %s: %w", indexName(index), err)
	}
	var out []DeviceStatus
	for _, m := range msgs {
		ds, err := decodeStatus(m.Data)
		if err != nil {
			return nil, fmt.Errorf("nbdkernel: NBD_CMD_STATUS reply: %w", err)
		}
		out = append(out, ds...)
	}
	return out, nil
}

// execute sends one command, bounded by ctx. The kernel answers CONNECT and
// STATUS with a message of their own, so those are sent without
// NLM_F_ACK: an acknowledgement would arrive as a second datagram and be
// read as the reply to the next request. Errors are always returned.
func (c *Conn) execute(ctx context.Context, cmd uint8, attrs []byte, flags netlink.HeaderFlags) ([]genetlink.Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		if err := c.c.SetDeadline(d); err == nil {
			defer c.c.SetDeadline(time.Time{})
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = c.c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	msgs, err := c.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: c.family.Version},
		Data:   attrs,
	}, c.family.ID, flags)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return msgs, err
}

func indexName(index int) string {
	if index < 0 {
		return "(any device)"
	}
	return DevicePath(uint32(index))
}

// seconds converts a timeout to the kernel's u64 seconds, rounding up so a
// sub-second timeout is not turned into "no timeout".
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(math.Ceil(d.Seconds()))
}

// encodeConfig encodes cfg's attributes. withGeometry adds size and block
// size (CONNECT only).
func encodeConfig(cfg Config, withGeometry bool) ([]byte, error) {
	if len(cfg.Sockets) == 0 && withGeometry {
		return nil, errors.New("nbdkernel: no sockets to connect")
	}
	bs := cfg.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < 512 || bs > 64<<10 || bs&(bs-1) != 0 {
		return nil, fmt.Errorf("nbdkernel: block size %d is not a power of two from 512 to 64 KiB", bs)
	}
	if withGeometry && cfg.Size > math.MaxInt64 {
		// The kernel takes the size as a loff_t: above 2^63 it is negative.
		return nil, fmt.Errorf("nbdkernel: export size %d exceeds 2^63-1", cfg.Size)
	}
	ae := netlink.NewAttributeEncoder()
	if cfg.Index >= 0 {
		if cfg.Index > math.MaxInt32 {
			return nil, fmt.Errorf("nbdkernel: device index %d out of range", cfg.Index)
		}
		ae.Uint32(attrIndex, uint32(cfg.Index))
	}
	if withGeometry {
		ae.Uint64(attrSizeBytes, cfg.Size)
		ae.Uint64(attrBlockSizeBytes, bs)
		ae.Uint64(attrServerFlags, cfg.ServerFlags)
	}
	if cfg.Timeout > 0 {
		ae.Uint64(attrTimeout, seconds(cfg.Timeout))
	}
	if cfg.DeadConnTimeout > 0 {
		ae.Uint64(attrDeadConnTimeout, seconds(cfg.DeadConnTimeout))
	}
	if cfg.ClientFlags != 0 || withGeometry {
		ae.Uint64(attrClientFlags, cfg.ClientFlags)
	}
	// A device connected with a backend identifier refuses to be
	// reconfigured without the same one ("must specify backend").
	if cfg.BackendID != "" {
		ae.String(attrBackendID, cfg.BackendID)
	}
	if len(cfg.Sockets) > 0 {
		ae.Nested(attrSockets, func(nae *netlink.AttributeEncoder) error {
			for _, fd := range cfg.Sockets {
				if fd < 0 || fd > math.MaxInt32 {
					return fmt.Errorf("nbdkernel: bad socket descriptor %d", fd)
				}
				nae.Nested(sockItem, func(item *netlink.AttributeEncoder) error {
					item.Uint32(sockFD, uint32(fd))
					return nil
				})
			}
			return nil
		})
	}
	b, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("nbdkernel: encoding configuration: %w", err)
	}
	return b, nil
}

// decodeIndex finds NBD_ATTR_INDEX in a reply.
func decodeIndex(b []byte) (uint32, bool, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return 0, false, err
	}
	var idx uint32
	found := false
	for ad.Next() {
		if ad.Type() == attrIndex {
			idx, found = ad.Uint32(), true
		}
	}
	return idx, found, ad.Err()
}

// decodeStatus decodes NBD_ATTR_DEVICE_LIST from a status reply.
func decodeStatus(b []byte) ([]DeviceStatus, error) {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return nil, err
	}
	var out []DeviceStatus
	for ad.Next() {
		if ad.Type() != attrDeviceList {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				if list.Type() != deviceItem {
					continue
				}
				list.Nested(func(item *netlink.AttributeDecoder) error {
					var ds DeviceStatus
					for item.Next() {
						switch item.Type() {
						case deviceIndex:
							ds.Index = item.Uint32()
						case deviceConnected:
							ds.Connected = item.Uint8() != 0
						}
					}
					out = append(out, ds)
					return nil
				})
			}
			return nil
		})
	}
	if err := ad.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// ConnectConns is Connect for sockets still owned by Go connections (for
// example a *vsock.Conn after nbdclient.Handshake): it fills cfg.Sockets
// with their descriptors, switched to blocking mode because the kernel
// client expects blocking sockets, for the duration of the call. The kernel
// holds its own reference afterwards; the caller should then close conns,
// which does not disturb the device.
func (c *Conn) ConnectConns(ctx context.Context, cfg Config, conns ...syscall.Conn) (uint32, error) {
	var idx uint32
	err := withFDs(conns, func(fds []int) error {
		cfg.Sockets = fds
		var err error
		idx, err = c.Connect(ctx, cfg)
		return err
	})
	return idx, err
}

// ReconfigureConns is Reconfigure for sockets owned by Go connections; see
// ConnectConns.
func (c *Conn) ReconfigureConns(ctx context.Context, index uint32, cfg Config, conns ...syscall.Conn) error {
	return withFDs(conns, func(fds []int) error {
		cfg.Sockets = fds
		return c.Reconfigure(ctx, index, cfg)
	})
}

// withFDs calls fn with the descriptors of conns, keeping each valid (inside
// RawConn.Control) until fn returns.
func withFDs(conns []syscall.Conn, fn func(fds []int) error) error {
	if len(conns) == 0 {
		return fn(nil)
	}
	rc, err := conns[0].SyscallConn()
	if err != nil {
		return fmt.Errorf("nbdkernel: socket descriptor: %w", err)
	}
	var ferr error
	cerr := rc.Control(func(fd uintptr) {
		if err := setBlocking(int(fd)); err != nil {
			ferr = fmt.Errorf("nbdkernel: making socket %d blocking: %w", fd, err)
			return
		}
		ferr = withFDs(conns[1:], func(rest []int) error {
			return fn(append([]int{int(fd)}, rest...))
		})
	})
	if cerr != nil {
		return fmt.Errorf("nbdkernel: socket descriptor: %w", cerr)
	}
	return ferr
}
