package crypt

import (
	"errors"
	"fmt"
)

// Errors callers may branch on with errors.Is.
var (
	// ErrNotLUKS reports a device with no LUKS signature in either header
	// slot.
	ErrNotLUKS = errors.New("not a LUKS device")
	// ErrUnsupportedVersion reports a LUKS header of another version
	// (LUKS1).
	ErrUnsupportedVersion = errors.New("unsupported LUKS version")
	// ErrCorruptHeader reports a LUKS2 header that fails its checksum or
	// whose metadata is malformed or inconsistent.
	ErrCorruptHeader = errors.New("corrupt LUKS2 header")
	// ErrTruncated reports a device too short for the header or keyslot
	// areas it declares.
	ErrTruncated = errors.New("device truncated")
	// ErrUnsupported reports valid LUKS2 metadata using a feature this
	// package does not implement (another cipher, keyslot type, segment
	// type, mandatory requirement...).
	ErrUnsupported = errors.New("unsupported LUKS2 feature")
	// ErrWrongKey reports that no keyslot opens with the given key.
	ErrWrongKey = errors.New("no keyslot matches the key")
	// ErrNoFreeSlot reports that AddKey found no free keyslot or no room in
	// the keyslots area.
	ErrNoFreeSlot = errors.New("no free keyslot")
	// ErrPolicy reports a valid header that OpenWithPolicy's Policy does
	// not allow; the error is a *PolicyError naming the field.
	ErrPolicy = errors.New("LUKS2 header refused by policy")
	// ErrInvalidArgument reports options or arguments that cannot produce a
	// header cryptsetup accepts.
	ErrInvalidArgument = errors.New("invalid argument")
)

// HeaderError is a problem with the header copy at Offset. Err wraps one of
// the sentinel errors above.
type HeaderError struct {
	Offset int64 // byte offset of the binary header on the device
	Err    error
}

func (e *HeaderError) Error() string {
	return fmt.Sprintf("LUKS2 header at offset %d: %v", e.Offset, e.Err)
}

func (e *HeaderError) Unwrap() error { return e.Err }

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrCorruptHeader}, args...)...)
}

func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}
