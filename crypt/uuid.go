package crypt

import "io"

// NewUUID returns a random (version 4) UUID in the canonical form Format
// writes, read from rnd. Callers that bind something to a header's UUID
// before writing it (a sealed key's encryption context) choose it with
// NewUUID and pass it in FormatOptions.UUID.
func NewUUID(rnd io.Reader) (string, error) { return newUUID(rnd) }
