package supervisor

import "github.com/enclave-storage/enclave-storage/control"

// Event is an event of the control channel.
type Event = control.Event
