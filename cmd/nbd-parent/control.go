package main

import (
	"context"
	"fmt"

	"github.com/enclave-storage/enclave-storage/control"
	"github.com/enclave-storage/enclave-storage/supervisor"
	"github.com/mdlayher/vsock"
)

// dialControl opens the control channel to nbd-enclave on the enclave of
// cid (package control, port control.DefaultPort).
func dialControl(ctx context.Context, cid uint32) (supervisor.Controller, error) {
	c, err := vsock.DialContext(ctx, cid, control.DefaultPort, nil)
	if err != nil {
		return nil, fmt.Errorf("control channel: %w", err)
	}
	return control.NewClient(c), nil
}
