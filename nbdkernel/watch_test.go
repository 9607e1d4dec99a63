package nbdkernel

import (
	"context"
	"errors"
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
)

func TestWatcher(t *testing.T) {
	fam := nbdFamily
	fam.Groups = []genetlink.MulticastGroup{{ID: 7, Name: MulticastGroup}}
	events := [][]genetlink.Message{
		{{Header: genetlink.Header{Command: cmdStatus}, Data: nil}}, // not an event we want
		reply(t, func(ae *netlink.AttributeEncoder) { ae.Uint32(attrIndex, 4) }),
	}
	events[1][0].Header.Command = cmdLinkDead
	c := genltest.Dial(genltest.ServeFamily(fam, func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		// genltest asks for multicast messages with an empty request.
		if len(events) == 0 {
			return nil, errors.New("no more events")
		}
		m := events[0]
		events = events[1:]
		return m, nil
	}))
	var joined []uint32
	w, err := newWatcher(c, func(id uint32) error { joined = append(joined, id); return nil })
	if err != nil || len(joined) != 1 || joined[0] != 7 {
		t.Fatalf("newWatcher joined %v: %v", joined, err)
	}
	if err != nil {
		t.Fatalf("NewWatcherConn: %v", err)
	}
	defer w.Close()
	idx, err := w.Next(context.Background())
	if err != nil || idx != 4 {
		t.Fatalf("Next = %d, %v; want 4", idx, err)
	}
	if _, err := w.Next(context.Background()); err == nil {
		t.Fatal("Next after the last event succeeded")
	}
}

func TestWatcherNoGroup(t *testing.T) {
	c := genltest.Dial(genltest.ServeFamily(nbdFamily, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, nil
	}))
	if _, err := NewWatcherConn(c); err == nil {
		t.Fatal("NewWatcherConn succeeded without a multicast group")
	}
}
