package nbdclient

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// fakeServer is the server half of a scripted handshake. It checks what the
// client sends and replies with canned bytes.
type fakeServer struct {
	t    *testing.T
	conn net.Conn
}

func (s *fakeServer) greet(flags uint16) {
	b := binary.BigEndian.AppendUint64(nil, magicNBD)
	b = binary.BigEndian.AppendUint64(b, magicIHaveOpt)
	b = binary.BigEndian.AppendUint16(b, flags)
	s.write(b)
}

func (s *fakeServer) write(b []byte) {
	if _, err := s.conn.Write(b); err != nil {
		s.t.Errorf("server write: %v", err)
	}
}

func (s *fakeServer) readClientFlags() uint32 {
	var f uint32
	if err := binary.Read(s.conn, binary.BigEndian, &f); err != nil {
		s.t.Errorf("server reading client flags: %v", err)
	}
	return f
}

// readOption returns the option number and payload the client sent.
func (s *fakeServer) readOption() (uint32, []byte) {
	var h [16]byte
	if _, err := io.ReadFull(s.conn, h[:]); err != nil {
		s.t.Errorf("server reading option: %v", err)
		return 0, nil
	}
	if m := binary.BigEndian.Uint64(h[:]); m != magicIHaveOpt {
		s.t.Errorf("option magic %#x", m)
	}
	p := make([]byte, binary.BigEndian.Uint32(h[12:]))
	if _, err := io.ReadFull(s.conn, p); err != nil {
		s.t.Errorf("server reading option data: %v", err)
	}
	return binary.BigEndian.Uint32(h[8:]), p
}

func optReply(opt, typ uint32, data []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, magicOptReply)
	b = binary.BigEndian.AppendUint32(b, opt)
	b = binary.BigEndian.AppendUint32(b, typ)
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(b, data...)
}

func infoExportReply(size uint64, flags uint16) []byte {
	p := binary.BigEndian.AppendUint16(nil, infoExport)
	p = binary.BigEndian.AppendUint64(p, size)
	p = binary.BigEndian.AppendUint16(p, flags)
	return optReply(optGo, repInfo, p)
}

func infoBlockReply(bs BlockSize) []byte {
	p := binary.BigEndian.AppendUint16(nil, infoBlockSize)
	p = binary.BigEndian.AppendUint32(p, bs.Minimum)
	p = binary.BigEndian.AppendUint32(p, bs.Preferred)
	p = binary.BigEndian.AppendUint32(p, bs.Maximum)
	return optReply(optGo, repInfo, p)
}

// checkGo checks an NBD_OPT_GO payload asks for name and for
// NBD_INFO_EXPORT and NBD_INFO_BLOCK_SIZE.
func (s *fakeServer) checkGo(name string) {
	opt, p := s.readOption()
	if opt != optGo {
		s.t.Errorf("option %d, want NBD_OPT_GO", opt)
		return
	}
	want := binary.BigEndian.AppendUint32(nil, uint32(len(name)))
	want = append(want, name...)
	want = append(want, 0, 2, 0, infoExport, 0, infoBlockSize)
	if !bytes.Equal(p, want) {
		s.t.Errorf("NBD_OPT_GO payload %x, want %x", p, want)
	}
}

// afterGo is a server that greets, takes NBD_OPT_GO for export "x" and
// sends replies.
func afterGo(replies ...[]byte) func(s *fakeServer) {
	return func(s *fakeServer) {
		s.greet(flagFixedNew | flagNoZeroes)
		s.readClientFlags()
		s.checkGo("x")
		for _, r := range replies {
			s.write(r)
		}
	}
}

func TestHandshake(t *testing.T) {
	const size = 1 << 30
	tests := []struct {
		name    string
		export  string
		server  func(s *fakeServer)
		want    *Export
		wantErr error
	}{
		{
			name:   "go with block size",
			export: "image",
			server: func(s *fakeServer) {
				s.greet(flagFixedNew | flagNoZeroes)
				if f := s.readClientFlags(); f != flagFixedNew|flagNoZeroes {
					s.t.Errorf("client flags %#x", f)
				}
				s.checkGo("image")
				s.write(optReply(optGo, 0x42, []byte("unknown reply type, ignored")))
				s.write(infoBlockReply(BlockSize{512, 4096, 32 << 20}))
				s.write(infoExportReply(size, FlagHasFlags|FlagReadOnly))
				s.write(optReply(optGo, repAck, nil))
			},
			want: &Export{Name: "image", Size: size, Flags: FlagHasFlags | FlagReadOnly,
				BlockSize: BlockSize{512, 4096, 32 << 20}},
		},
		{
			name:   "go without no-zeroes",
			export: "run",
			server: func(s *fakeServer) {
				s.greet(flagFixedNew)
				if f := s.readClientFlags(); f != flagFixedNew {
					s.t.Errorf("client flags %#x", f)
				}
				s.checkGo("run")
				s.write(infoExportReply(4096, FlagHasFlags|FlagSendFlush))
				s.write(optReply(optGo, repAck, nil))
			},
			want: &Export{Name: "run", Size: 4096, Flags: FlagHasFlags | FlagSendFlush},
		},
		{
			name:   "unknown export",
			export: "nope",
			server: func(s *fakeServer) {
				s.greet(flagFixedNew | flagNoZeroes)
				s.readClientFlags()
				s.checkGo("nope")
				s.write(optReply(optGo, repFlagError|6, []byte("no such export")))
			},
			wantErr: ErrUnknownExport,
		},
		{
			name:   "fallback to export name",
			export: "old",
			server: func(s *fakeServer) {
				s.greet(flagFixedNew)
				s.readClientFlags()
				s.checkGo("old")
				s.write(optReply(optGo, repErrUnsup, nil))
				opt, p := s.readOption()
				if opt != optExportName || string(p) != "old" {
					s.t.Errorf("got option %d %q, want NBD_OPT_EXPORT_NAME old", opt, p)
				}
				b := binary.BigEndian.AppendUint64(nil, 8192)
				b = binary.BigEndian.AppendUint16(b, FlagHasFlags)
				s.write(append(b, make([]byte, exportNameZero)...))
			},
			want: &Export{Name: "old", Size: 8192, Flags: FlagHasFlags, UsedExportName: true},
		},
		{
			name:   "fallback, server hangs up",
			export: "old",
			server: func(s *fakeServer) {
				s.greet(flagFixedNew | flagNoZeroes)
				s.readClientFlags()
				s.checkGo("old")
				s.write(optReply(optGo, repErrUnsup, nil))
				s.readOption()
				s.conn.Close()
			},
			wantErr: ErrUnknownExport,
		},
		{
			name:   "not nbd",
			export: "x",
			server: func(s *fakeServer) {
				s.write([]byte("SSH-2.0-OpenSSH_9\n")) // 18 bytes, the greeting size
			},
			wantErr: ErrNotNBD,
		},
		{
			name:   "old newstyle without fixed flag",
			export: "x",
			server: func(s *fakeServer) {
				s.greet(0)
			},
			wantErr: ErrNotNBD,
		},
		{
			name:    "ack without export info",
			export:  "x",
			server:  afterGo(optReply(optGo, repAck, nil)),
			wantErr: ErrProtocol,
		},
		{
			name:   "huge reply length",
			export: "x",
			server: func(s *fakeServer) {
				s.greet(flagFixedNew | flagNoZeroes)
				s.readClientFlags()
				s.checkGo("x")
				b := optReply(optGo, repInfo, nil)
				binary.BigEndian.PutUint32(b[16:], 0xffffffff)
				s.write(b)
			},
			wantErr: ErrProtocol,
		},
		{
			name:    "export size above 2^63",
			export:  "x",
			server:  afterGo(infoExportReply(1<<63+4096, FlagHasFlags)),
			wantErr: ErrProtocol,
		},
		{
			name:    "export size 2^64-1",
			export:  "x",
			server:  afterGo(infoExportReply(1<<64-1, FlagHasFlags)),
			wantErr: ErrProtocol,
		},
		{
			name:   "export size just above MaxExportSize, old negotiation",
			export: "old",
			server: func(s *fakeServer) {
				s.greet(flagFixedNew)
				s.readClientFlags()
				s.checkGo("old")
				s.write(optReply(optGo, repErrUnsup, nil))
				s.readOption()
				b := binary.BigEndian.AppendUint64(nil, MaxExportSize+1)
				b = binary.BigEndian.AppendUint16(b, FlagHasFlags)
				s.write(append(b, make([]byte, exportNameZero)...))
			},
			wantErr: ErrProtocol,
		},
		{
			name:    "bad block size",
			export:  "x",
			server:  afterGo(infoBlockReply(BlockSize{3, 4096, 4096})),
			wantErr: ErrProtocol,
		},
		{
			name:   "reply to another option",
			export: "x",
			server: func(s *fakeServer) {
				s.greet(flagFixedNew | flagNoZeroes)
				s.readClientFlags()
				s.checkGo("x")
				s.write(optReply(optExportName, repAck, nil))
			},
			wantErr: ErrProtocol,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			done := make(chan struct{})
			go func() {
				defer close(done)
				tt.server(&fakeServer{t: t, conn: server})
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			got, err := Handshake(ctx, client, tt.export)
			client.Close()
			<-done
			server.Close()
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Handshake error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Handshake: %v", err)
			}
			if *got != *tt.want {
				t.Fatalf("Handshake = %+v, want %+v", *got, *tt.want)
			}
		})
	}
}

func TestHandshakeContextCancel(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := Handshake(ctx, client, "x")
		errc <- err
	}()
	// The server never speaks; cancelling must unblock the read.
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Handshake error = %v, want context.Canceled", err)
	}
}

func TestHandshakeNameTooLong(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	defer client.Close()
	_, err := Handshake(context.Background(), client, string(make([]byte, maxNameLength+1)))
	if err == nil {
		t.Fatal("Handshake accepted a 4097-byte export name")
	}
}

func TestOptionErrorMessage(t *testing.T) {
	err := error(&OptionError{Option: optGo, Reply: repFlagError | 2, Message: "denied"})
	if got, want := err.Error(), "nbdclient: option 7 refused with NBD_REP_ERR_POLICY: denied"; got != want {
		t.Fatalf("Error() = %q, want %q", got, want)
	}
	if errors.Is(err, ErrUnknownExport) {
		t.Fatal("NBD_REP_ERR_POLICY matched ErrUnknownExport")
	}
}

// scripted is an io.ReadWriter reading a fixed server script.
type scripted struct {
	io.Reader
	io.Writer
}

// FuzzHandshake feeds arbitrary server bytes to the client: it must return,
// without panicking or allocating more than the bounded reply size.
func FuzzHandshake(f *testing.F) {
	var ok bytes.Buffer
	ok.Write(binary.BigEndian.AppendUint64(nil, magicNBD))
	ok.Write(binary.BigEndian.AppendUint64(nil, magicIHaveOpt))
	ok.Write([]byte{0, 3})
	ok.Write(infoBlockReply(BlockSize{1, 4096, 1 << 20}))
	ok.Write(infoExportReply(1<<20, FlagHasFlags))
	ok.Write(optReply(optGo, repAck, nil))
	f.Add(ok.Bytes())
	var unsup bytes.Buffer
	unsup.Write(ok.Bytes()[:18])
	unsup.Write(optReply(optGo, repErrUnsup, nil))
	unsup.Write(make([]byte, 10))
	f.Add(unsup.Bytes())
	f.Add([]byte("NBDMAGIC"))
	f.Fuzz(func(t *testing.T, b []byte) {
		exp, err := handshake(scripted{bytes.NewReader(b), io.Discard}, "fuzz")
		if err == nil && exp == nil {
			t.Fatal("nil export without error")
		}
		if err == nil && exp.Size > MaxExportSize {
			t.Fatalf("export size %d accepted", exp.Size)
		}
	})
}
