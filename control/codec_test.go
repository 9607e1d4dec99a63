package control

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestReadLine(t *testing.T) {
	long := strings.Repeat("x", MaxLine-1) // with its newline: exactly MaxLine
	for _, tc := range []struct {
		name  string
		in    string
		lines []string
		err   error
	}{
		{"one", "{}\n", []string{"{}"}, io.EOF},
		{"two", "a\nb\n", []string{"a", "b"}, io.EOF},
		{"empty", "", nil, io.EOF},
		{"unterminated", "a\nb", []string{"a"}, io.ErrUnexpectedEOF},
		{"max", long + "\n", []string{long}, io.EOF},
		{"too long", long + "x\n", nil, ErrLineTooLong},
		{"too long unterminated", strings.Repeat("y", 3*MaxLine), nil, ErrLineTooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.in))
			var got []string
			var err error
			for {
				var l []byte
				if l, err = ReadLine(r); err != nil {
					break
				}
				got = append(got, string(l))
			}
			if !errors.Is(err, tc.err) {
				t.Errorf("error %v, want %v", err, tc.err)
			}
			if strings.Join(got, "|") != strings.Join(tc.lines, "|") {
				t.Errorf("lines %q, want %q", got, tc.lines)
			}
		})
	}
}

func TestReadLineSmallBuffer(t *testing.T) {
	// A reader smaller than MaxLine would split lines: ReadLine calls it
	// too long rather than return a fragment.
	r := bufio.NewReaderSize(strings.NewReader(strings.Repeat("z", 100)+"\n"), 16)
	if _, err := ReadLine(r); !errors.Is(err, ErrLineTooLong) {
		t.Fatalf("got %v", err)
	}
}

func TestParseRequest(t *testing.T) {
	for _, tc := range []struct {
		line  string
		grace time.Duration
		set   bool
		err   error
	}{
		{`{"op":"stop"}`, 0, false, nil},
		{`{"op":"stop","grace_ms":2500}`, 2500 * time.Millisecond, true, nil},
		{`{"op":"stop","grace_ms":0}`, 0, true, nil},
		{` {"grace_ms":1,"op":"stop"} `, time.Millisecond, true, nil},
		{`{"op":"stop","grace_ms":-1}`, 0, false, ErrBadMessage},
		{`{"op":"stop","grace_ms":86400001}`, 0, false, ErrBadMessage},
		{`{"op":"stop","grace_ms":1.5}`, 0, false, ErrBadMessage},
		{`{"op":"stop","grace_ms":"1"}`, 0, false, ErrBadMessage},
		{`{"op":"exec","cmd":"sh"}`, 0, false, ErrBadMessage},
		{`{"op":"reboot"}`, 0, false, ErrBadMessage},
		{`{"op":"stop","extra":1}`, 0, false, ErrBadMessage},
		{`{"op":"stop"}{"op":"stop"}`, 0, false, ErrBadMessage},
		{`{"op":"stop"`, 0, false, ErrBadMessage},
		{`[]`, 0, false, ErrBadMessage},
		{``, 0, false, ErrBadMessage},
		{"\x00\xff", 0, false, ErrBadMessage},
		{`{"op":"stop","grace_ms":` + strings.Repeat("9", MaxLine) + `}`, 0, false, ErrLineTooLong},
	} {
		r, err := ParseRequest([]byte(tc.line))
		if !errors.Is(err, tc.err) {
			t.Errorf("%q: error %v, want %v", tc.line, err, tc.err)
			continue
		}
		if g, set := r.Grace(); err == nil && (g != tc.grace || set != tc.set) {
			t.Errorf("%q: grace %v %v, want %v %v", tc.line, g, set, tc.grace, tc.set)
		}
	}
}

func TestParseEvent(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Event
		err  error
	}{
		{`{"event":"hello","version":1}`, Event{Event: EventHello, Version: 1}, nil},
		{`{"event":"stopping"}`, Event{Event: EventStopping}, nil},
		{`{"event":"app-exited","status":143}`, Event{Event: EventAppExited, Status: Status(143)}, nil},
		{`{"event":"down","status":0,"clean":true}`, Event{Event: EventDown, Status: Status(0), Clean: true}, nil},
		{`{"event":"down","status":1,"error":"umount: busy"}`, Event{Event: EventDown, Status: Status(1), Error: "umount: busy"}, nil},
		{`{"event":"future-thing"}`, Event{Event: "future-thing"}, nil},
		{`{"event":"down","clean":true}`, Event{}, ErrBadMessage},
		{`{"event":"app-exited"}`, Event{}, ErrBadMessage},
		{`{"event":""}`, Event{}, ErrBadMessage},
		{`{"event":"hello","x":1}`, Event{}, ErrBadMessage},
		{`nonsense`, Event{}, ErrBadMessage},
	} {
		got, err := ParseEvent([]byte(tc.line))
		if !errors.Is(err, tc.err) {
			t.Errorf("%q: error %v, want %v", tc.line, err, tc.err)
			continue
		}
		if err == nil && !sameEvent(got, tc.want) {
			t.Errorf("%q: got %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func sameEvent(a, b Event) bool {
	if (a.Status == nil) != (b.Status == nil) || (a.Status != nil && *a.Status != *b.Status) {
		return false
	}
	a.Status, b.Status = nil, nil
	return a == b
}

func TestEventRoundTrip(t *testing.T) {
	for _, ev := range []Event{
		{Event: EventHello, Version: Version},
		{Event: EventStopping},
		{Event: EventAppExited, Status: Status(0)},
		{Event: EventDown, Status: Status(137), Clean: false, Error: "teardown: device busy"},
	} {
		line, err := marshalLine(ev)
		if err != nil {
			t.Fatal(err)
		}
		if line[len(line)-1] != '\n' || strings.Count(string(line), "\n") != 1 {
			t.Fatalf("%q is not one line", line)
		}
		got, err := ParseEvent(line[:len(line)-1])
		if err != nil || !sameEvent(got, ev) {
			t.Errorf("%q: got %+v, %v", line, got, err)
		}
	}
}

// FuzzParseRequest feeds the enclave's parser what a hostile parent may
// send: it must never panic, never accept a line over MaxLine, and accept
// only stop requests with a grace in range.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{`{"op":"stop"}`, `{"op":"stop","grace_ms":100}`, `{"op":"stop","grace_ms":-5}`,
		`{"op":"x"}`, `{"op":"stop"}` + "\n" + `{"op":"stop"}`, "\n\n", `{"op":"stop","grace_ms":1e99}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(strings.NewReader(string(b)))
		for {
			line, err := ReadLine(r)
			if err != nil {
				return
			}
			if len(line) >= MaxLine {
				t.Fatalf("line of %d bytes accepted", len(line))
			}
			req, err := ParseRequest(line)
			if err != nil {
				continue
			}
			g, set := req.Grace()
			if req.Op != OpStop || g < 0 || g > MaxGrace || set != (req.GraceMS != nil) {
				t.Fatalf("accepted %+v from %q", req, line)
			}
		}
	})
}

// FuzzParseEvent: the parent's parser of the enclave's events.
func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"event":"down","status":0,"clean":true}`))
	f.Add([]byte(`{"event":"hello","version":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseEvent(b)
		if err != nil {
			return
		}
		if ev.Event == "" || ((ev.Event == EventDown || ev.Event == EventAppExited) && ev.Status == nil) {
			t.Fatalf("accepted %+v", ev)
		}
	})
}
