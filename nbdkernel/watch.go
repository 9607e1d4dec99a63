package nbdkernel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/genetlink"
)

// A Watcher reports devices whose connection died (NBD_CMD_LINK_DEAD
// multicast on "nbd_mc_group"), so that the caller can redial and hand the
// kernel a new socket with Reconfigure before DeadConnTimeout expires. It
// uses a netlink socket of its own: multicast messages must not be mixed
// with the replies a Conn waits for.
type Watcher struct {
	c *genetlink.Conn
}

// NewWatcher opens a netlink socket and joins the nbd multicast group.
func NewWatcher() (*Watcher, error) {
	c, err := genetlink.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("nbdkernel: opening generic netlink socket: %w", err)
	}
	w, err := NewWatcherConn(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return w, nil
}

// NewWatcherConn is NewWatcher on an existing connection. It takes
// ownership of c.
func NewWatcherConn(c *genetlink.Conn) (*Watcher, error) {
	return newWatcher(c, c.JoinGroup)
}

// newWatcher resolves the group and joins it with join (genltest cannot
// join groups, so tests pass a no-op).
func newWatcher(c *genetlink.Conn, join func(uint32) error) (*Watcher, error) {
	nc, err := NewConn(c)
	if err != nil {
		return nil, err
	}
	for _, g := range nc.family.Groups {
		if g.Name == MulticastGroup {
			if err := join(g.ID); err != nil {
				return nil, fmt.Errorf("nbdkernel: joining %s: %w", MulticastGroup, err)
			}
			return &Watcher{c: c}, nil
		}
	}
	return nil, fmt.Errorf("nbdkernel: the nbd family has no %q multicast group", MulticastGroup)
}

// Close stops the watcher; a blocked Next returns an error.
func (w *Watcher) Close() error { return w.c.Close() }

// Next blocks until a connection dies and returns its device index, or
// until ctx is done.
func (w *Watcher) Next(ctx context.Context) (uint32, error) {
	stop := context.AfterFunc(ctx, func() { _ = w.c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		msgs, _, err := w.c.Receive()
		if err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, fmt.Errorf("nbdkernel: receiving nbd events: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Command != cmdLinkDead {
				continue
			}
			idx, ok, err := decodeIndex(m.Data)
			if err != nil {
				return 0, fmt.Errorf("nbdkernel: NBD_CMD_LINK_DEAD: %w", err)
			}
			if !ok {
				return 0, errors.New("nbdkernel: NBD_CMD_LINK_DEAD without NBD_ATTR_INDEX")
			}
			return idx, nil
		}
	}
}
