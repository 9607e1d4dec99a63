// Package control is the stop channel between nbd-parent and nbd-enclave.
//
// An enclave's init (nbd-enclave, PID 1) cannot be signalled from outside:
// the parent instance can only terminate the whole enclave, which cuts the
// application off mid-write and leaves the run volume's ext4 to its
// journal. So nbd-enclave listens on vsock (DefaultPort, 9100) and the
// parent's supervisor asks it, over this channel, to stop the application
// as SIGTERM to nbd-enclave would: SIGTERM to the application, a grace
// period, SIGKILL, then unmount, device-mapper removal and NBD disconnect.
//
// # Wire format
//
// Newline-delimited JSON, every line at most MaxLine bytes including the
// newline. The parent sends requests:
//
//	{"op":"stop","grace_ms":N}
//
// grace_ms is optional; the enclave uses the smaller of it and its own
// measured stop_grace. The enclave sends events (Event), one per line:
//
//	{"event":"hello","version":1}                          on accept
//	{"event":"stopping"}                                   a stop was accepted
//	{"event":"app-exited","status":N}                      the application ended, for any reason
//	{"event":"down","status":N,"clean":true,"error":"..."} teardown finished; the enclave ends next
//	{"event":"error","error":"..."}                        the request was refused; the connection closes
//
// Events go to every connected client; one that connects late is told the
// lifecycle events already published (after its hello), so a supervisor
// that reconnects learns where the enclave is.
//
// # Who can send what
//
// The parent instance is hostile in our threat model: it serves the
// blocks, and may lie, replay or cut. Stopping the enclave is something
// it can always do anyway (nitro-cli terminate-enclave), so the channel
// grants it nothing new: the only request is "stop", and its only
// parameter can only shorten the measured grace period, never lengthen
// it. Lines are bounded before they are allocated (ReadLine), decoded
// strictly (unknown fields and operations are errors), and any error closes
// the connection; FuzzParseRequest fuzzes the parser. Nothing the parent
// sends reaches the application, the keys or the volumes. The enclave
// accepts connections only from the CID of its configured parent (a
// Server's Allow check, PeerCID), so another enclave on the same host
// cannot stop it.
//
// What the enclave tells the parent (events) is no secret: the parent sees
// the enclave end anyway, and the exit status is the application's.
package control
