package nsm

import (
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Sizes of the driver's message buffers (nsm-api src/driver/mod.rs).
const (
	maxRequestSize  = 0x1000
	maxResponseSize = 0x3000
)

// ErrDevice: the NSM answered with an error, or with something that is not
// an Attestation response.
var ErrDevice = errors.New("nsm: device error")

// DeviceError is an NSM error response, {"Error": CODE} with CODE one of the
// nsm-api's ErrorCode names (InvalidArgument, InputTooLarge, InternalError…).
type DeviceError struct{ Code string }

func (e *DeviceError) Error() string { return "nsm: device returned " + e.Code }

// Unwrap makes every DeviceError match ErrDevice.
func (e *DeviceError) Unwrap() error { return ErrDevice }

// attestationRequest is Request::Attestation of the nsm-api as serde
// serializes it: the fields in declaration order, Option<ByteBuf> as a byte
// string or null.
type attestationRequest struct {
	UserData  []byte `cbor:"user_data"`
	Nonce     []byte `cbor:"nonce"`
	PublicKey []byte `cbor:"public_key"`
}

// encMode writes nil slices as null, as serde writes None.
var encMode = func() cbor.EncMode {
	m, err := cbor.EncOptions{NilContainers: cbor.NilContainerAsNull}.EncMode()
	if err != nil {
		panic(err)
	}
	return m
}()

// encodeRequest returns the CBOR of {"Attestation": {...}}, an externally
// tagged serde enum variant.
func encodeRequest(r Request) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	b, err := encMode.Marshal(map[string]attestationRequest{
		"Attestation": {UserData: r.UserData, Nonce: r.Nonce, PublicKey: r.PublicKey},
	})
	if err != nil {
		return nil, fmt.Errorf("nsm: encode request: %w", err)
	}
	if len(b) > maxRequestSize {
		return nil, fmt.Errorf("nsm: request of %d bytes exceeds %d", len(b), maxRequestSize)
	}
	return b, nil
}

// decodeResponse returns the document of {"Attestation": {"document": bstr}}
// or the DeviceError of {"Error": "CODE"}.
func decodeResponse(b []byte) ([]byte, error) {
	if len(b) > maxResponseSize {
		return nil, fmt.Errorf("%w: response of %d bytes", ErrDevice, len(b))
	}
	var m map[string]cbor.RawMessage
	if err := decMode.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%w: response: %v", ErrDevice, err)
	}
	if len(m) != 1 {
		return nil, fmt.Errorf("%w: response with %d variants", ErrDevice, len(m))
	}
	if raw, ok := m["Error"]; ok {
		var code string
		if major(raw) != majorText || decMode.Unmarshal(raw, &code) != nil {
			return nil, fmt.Errorf("%w: undecodable error response", ErrDevice)
		}
		return nil, &DeviceError{Code: code}
	}
	raw, ok := m["Attestation"]
	if !ok {
		return nil, fmt.Errorf("%w: response is not Attestation", ErrDevice)
	}
	var a struct {
		Document cbor.RawMessage `cbor:"document"`
	}
	if major(raw) != majorMap || decMode.Unmarshal(raw, &a) != nil || a.Document == nil || major(a.Document) != majorBytes {
		return nil, fmt.Errorf("%w: Attestation response without a document", ErrDevice)
	}
	var doc []byte
	if err := decMode.Unmarshal(a.Document, &doc); err != nil || len(doc) == 0 {
		return nil, fmt.Errorf("%w: Attestation response without a document", ErrDevice)
	}
	return doc, nil
}
