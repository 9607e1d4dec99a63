package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParserConsume(t *testing.T) {
	const console = "SeaBIOS (version 1.16.2)\r\n" +
		"\x1b[2J@@tok INTEGRATION-START uptime=3.46\r\n" +
		"@@tok INTEGRATION-MODULES uptime=6.02\r\n" +
		"=== RUN   TestX\r\n" +
		"RESULT fake PASS 1.0\r\n" + // untagged: test output, ignored
		"@@other RESULT forged PASS 1\r\n" + // wrong token, ignored
		"@@tok RESULT dm PASS 1.25\r\n" +
		"[   47.631963] kernel noise @@tok RESULT itest FAIL 0.50\r\n" +
		"@@tok INTEGRATION-DONE rc=1 uptime=47.64\r\n" +
		"[   47.7] reboot: Power down"
	p := NewParser("tok")
	var echo strings.Builder
	if err := p.Consume(strings.NewReader(console), &echo); err != nil {
		t.Fatal(err)
	}
	got := p.Report()
	want := Report{
		Results:       []Result{{Name: "dm", Pass: true, Seconds: 1.25}, {Name: "itest", Seconds: 0.5}},
		Done:          true,
		RC:            1,
		GuestBoot:     3.46,
		ModulesLoaded: 6.02,
	}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().String() == ".Boot" || p.Last().String() == ".Total"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
	if !got.Failed() {
		t.Error("Failed() = false with a failing test and rc=1")
	}
	if strings.Contains(echo.String(), "\r") || strings.Count(echo.String(), "\n") != 10 {
		t.Errorf("echo should be the 10 lines without carriage returns, got %q", echo.String())
	}
}

func TestParserLine(t *testing.T) {
	tests := []struct {
		line string
		ok   bool
	}{
		{"plain console text", true},
		{"@@t RESULT a PASS 1", true},
		{"@@t RESULT a MAYBE 1", false},
		{"@@t RESULT a PASS", false},
		{"@@t RESULT a PASS x", false},
		{"@@t INTEGRATION-DONE", false},
		{"@@t INTEGRATION-DONE rc=x", false},
		{"@@t ", false},
		{"@@t SOMETHING", false},
	}
	for _, tt := range tests {
		err := NewParser("t").Line(tt.line)
		if (err == nil) != tt.ok {
			t.Errorf("Line(%q) = %v, want ok=%v", tt.line, err, tt.ok)
		}
	}
}

func TestReportFailed(t *testing.T) {
	tests := []struct {
		name string
		r    Report
		want bool
	}{
		{"clean", Report{Done: true, Results: []Result{{Name: "a", Pass: true}}}, false},
		{"not done", Report{Results: []Result{{Name: "a", Pass: true}}}, true},
		{"rc", Report{Done: true, RC: 2}, true},
		{"test failed", Report{Done: true, Results: []Result{{Name: "a"}}}, true},
	}
	for _, tt := range tests {
		if got := tt.r.Failed(); got != tt.want {
			t.Errorf("%s: Failed() = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestConsumeLongLine(t *testing.T) {
	long := strings.Repeat("x", 3<<20)
	p := NewParser("t")
	p.now = func() time.Time { return p.start }
	if err := p.Consume(strings.NewReader(long+"\n@@t INTEGRATION-DONE rc=0\n"), nil); err != nil {
		t.Fatal(err)
	}
	if r := p.Report(); !r.Done || r.Failed() {
		t.Errorf("report after a long line: %+v", r)
	}
}

// FuzzParser feeds arbitrary console bytes (the guest is not trusted to
// print well-formed lines): no panic, and a result only from a tagged line.
func FuzzParser(f *testing.F) {
	f.Add("@@t RESULT a PASS 1.5\n@@t INTEGRATION-DONE rc=0\n")
	f.Add("@@t INTEGRATION-START uptime=1\r\n@@t RESULT  PASS\n")
	f.Fuzz(func(t *testing.T, console string) {
		p := NewParser("t")
		p.Consume(strings.NewReader(console), nil)
		if n := len(p.Report().Results); n > strings.Count(console, "@@t ") {
			t.Fatalf("%d results from %d tagged lines", n, strings.Count(console, "@@t "))
		}
	})
}
