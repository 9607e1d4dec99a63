package integration

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Result is the outcome of one test binary (or of a module load).
type Result struct {
	Name    string
	Pass    bool
	Seconds float64 // wall time inside the VM
}

// Report is what a run printed.
type Report struct {
	Results []Result
	// Done is set when /init reached its end; RC is its exit code (0 when
	// every test binary passed and every module loaded).
	Done bool
	RC   int
	// Boot is the host-side time from starting QEMU to /init's first
	// line; GuestBoot is the guest's uptime at that line and ModulesLoaded
	// its uptime once the modules are in.
	Boot          time.Duration
	GuestBoot     float64
	ModulesLoaded float64
	// Total is the host-side wall time of the whole run.
	Total time.Duration
}

// Failed reports whether the run did not finish cleanly or any test failed.
func (r *Report) Failed() bool {
	if !r.Done || r.RC != 0 {
		return true
	}
	for _, res := range r.Results {
		if !res.Pass {
			return true
		}
	}
	return false
}

// Parser reads a console stream for the lines /init prints with its token,
// copying every line to an optional echo writer.
type Parser struct {
	token  string
	report Report
	start  time.Time
	now    func() time.Time
}

// NewParser returns a parser for lines tagged "@@token ".
func NewParser(token string) *Parser {
	return &Parser{token: "@@" + token + " ", start: time.Now(), now: time.Now}
}

// Report returns what has been parsed so far.
func (p *Parser) Report() Report { return p.report }

// Line parses one console line. Lines without the token are ignored;
// malformed tagged lines are errors. The tag may follow other text on the
// same line (kernel messages share the console).
func (p *Parser) Line(line string) error {
	i := strings.Index(line, p.token)
	if i < 0 {
		return nil
	}
	f := strings.Fields(line[i+len(p.token):])
	if len(f) == 0 {
		return fmt.Errorf("integration: empty tagged line %q", line)
	}
	kv := func(key string) (float64, error) {
		for _, s := range f[1:] {
			if v, ok := strings.CutPrefix(s, key+"="); ok {
				return strconv.ParseFloat(v, 64)
			}
		}
		return 0, fmt.Errorf("integration: no %s= in %q", key, line)
	}
	var err error
	switch f[0] {
	case "INTEGRATION-START":
		p.report.Boot = p.now().Sub(p.start)
		p.report.GuestBoot, err = kv("uptime")
	case "INTEGRATION-MODULES":
		p.report.ModulesLoaded, err = kv("uptime")
	case "RESULT":
		if len(f) != 4 || (f[2] != "PASS" && f[2] != "FAIL") {
			return fmt.Errorf("integration: malformed result line %q", line)
		}
		secs, perr := strconv.ParseFloat(f[3], 64)
		if perr != nil {
			return fmt.Errorf("integration: malformed result line %q: %w", line, perr)
		}
		p.report.Results = append(p.report.Results, Result{Name: f[1], Pass: f[2] == "PASS", Seconds: secs})
	case "INTEGRATION-DONE":
		var rc float64
		rc, err = kv("rc")
		p.report.RC, p.report.Done = int(rc), true
	default:
		return fmt.Errorf("integration: unknown tagged line %q", line)
	}
	return err
}

// Consume parses lines from r until EOF, echoing each (without carriage
// returns) to echo when it is not nil. Malformed tagged lines are echoed
// and otherwise ignored but make Consume's result an error.
func (p *Parser) Consume(r io.Reader, echo io.Writer) error {
	const maxLine = 1 << 20 // longer lines are truncated, not buffered
	var first error
	br := bufio.NewReaderSize(r, 64<<10)
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line) < maxLine {
			line = append(line, chunk[:min(len(chunk), maxLine-len(line))]...)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if len(line) > 0 {
			s := strings.TrimRight(string(line), "\r\n")
			if echo != nil {
				fmt.Fprintln(echo, s)
			}
			if perr := p.Line(s); perr != nil && first == nil {
				first = perr
			}
			line = line[:0]
		}
		if err != nil {
			if err != io.EOF && first == nil {
				first = fmt.Errorf("integration: reading console: %w", err)
			}
			break
		}
	}
	p.report.Total = p.now().Sub(p.start)
	return first
}
