//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/enclave-storage/enclave-storage/eif"
)

// DefaultState is where enclaves are recorded unless $NITRO_CLI_STATE
// says otherwise.
const DefaultState = "/run/fake-nitro-cli"

// idPrefix is generate_enclave_id's form without an instance asset tag.
const idPrefix = "i-0000000000000000-enc"

// state is the directory of running enclaves, one subdirectory each,
// named by enclave ID.
type state struct{ dir string }

func newState() state {
	d := os.Getenv("NITRO_CLI_STATE")
	if d == "" {
		d = DefaultState
	}
	return state{dir: d}
}

// enclave is what the state records of one enclave.
type enclave struct {
	Name    string   `json:"name"`
	ID      string   `json:"id"`
	Slot    uint64   `json:"slot"`
	CPUs    int      `json:"cpus"`
	CPUIDs  []uint32 `json:"cpu_ids"`
	Memory  uint64   `json:"memory_mib"`
	Debug   bool     `json:"debug"`
	PCRs    eif.PCRs `json:"pcrs"`
	ProcPID int      `json:"proc_pid"` // the enclave process
	dir     string
}

// File names in an enclave's directory.
const (
	infoFile    = "enclave.json"
	rootDir     = "root"
	cmdlineFile = "cmdline"
	consoleLog  = "console.log"
	consoleFIFO = "console.fifo"
	initPIDFile = "init.pid"
)

func (e *enclave) path(name string) string { return filepath.Join(e.dir, name) }

func (e *enclave) save() error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	tmp := e.path(infoFile + ".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, e.path(infoFile))
}

// alive reports whether the enclave's process still runs (a zombie,
// which an init that does not reap may leave, does not).
func (e *enclave) alive() bool {
	if e.ProcPID <= 0 || unix.Kill(e.ProcPID, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", e.ProcPID))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces, the state follows the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// initPID is the host PID of the enclave's PID 1, 0 when not started.
func (e *enclave) initPID() int {
	b, err := os.ReadFile(e.path(initPIDFile))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// list returns the running enclaves, by slot; directories whose enclave
// process is gone are removed.
func (s state) list() ([]*enclave, error) {
	ents, err := os.ReadDir(s.dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fail(eFileOperation, "Error while accessing the state directory: %v", err)
	}
	var out []*enclave
	for _, de := range ents {
		if !de.IsDir() || !strings.HasPrefix(de.Name(), idPrefix) {
			continue
		}
		e, err := s.load(de.Name())
		if err != nil {
			continue // being created or removed
		}
		if e.ProcPID == 0 {
			continue // run-enclave has not started it yet
		}
		if !e.alive() {
			os.RemoveAll(e.dir)
			continue
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out, nil
}

func (s state) load(id string) (*enclave, error) {
	dir := filepath.Join(s.dir, id)
	b, err := os.ReadFile(filepath.Join(dir, infoFile))
	if err != nil {
		return nil, err
	}
	var e enclave
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	e.dir = dir
	return &e, nil
}

// create makes the directory of a new enclave in the lowest free slot.
func (s state) create(e *enclave) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fail(eFileOperation, "Failed to create the state directory: %v", err)
	}
	for slot := uint64(1); ; slot++ {
		e.Slot, e.ID = slot, fmt.Sprintf("%s%x", idPrefix, slot)
		e.dir = filepath.Join(s.dir, e.ID)
		err := os.Mkdir(e.dir, 0o700)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return fail(eFileOperation, "Failed to create the enclave's directory: %v", err)
		}
		return e.save()
	}
}

// find returns the running enclave with this ID or name.
func (s state) find(id, name string) (*enclave, error) {
	all, err := s.list()
	if err != nil {
		return nil, err
	}
	for _, e := range all {
		if (id != "" && e.ID == id) || (name != "" && e.Name == name) {
			return e, nil
		}
	}
	if id == "" {
		id = name
	}
	return nil, fail(eEnclaveProcConn, "Enclave process connection failure. No enclave %q is running.", id)
}
