package supervisor

// Event is an event of the control channel (control.Event).
type Event struct {
	Event   string `json:"event"`
	Status  *int   `json:"status,omitempty"`
	Clean   bool   `json:"clean,omitempty"`
	Error   string `json:"error,omitempty"`
	Version int    `json:"version,omitempty"`
}
