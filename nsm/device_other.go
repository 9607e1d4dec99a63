//go:build !linux

package nsm

import (
	"context"
	"errors"
)

// errNoDevice: there is no NSM on this operating system.
var errNoDevice = errors.New("nsm: no NSM device outside Linux")

// Device is an open NSM device; there is none outside Linux.
type Device struct{}

// Open fails outside Linux.
func Open() (*Device, error) { return nil, errNoDevice }

// Close does nothing.
func (d *Device) Close() error { return nil }

// Attest fails outside Linux.
func (d *Device) Attest(context.Context, Request) ([]byte, error) { return nil, errNoDevice }
