//go:build linux

package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/enclave-storage/enclave-storage/enclave"
)

func TestParseConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "config.json")
	os.WriteFile(conf, []byte(`{"parent":"vsock://3:10809","key":"file:/k","app":{"entrypoint":["/srv/app"],"cmd":["-v"]}}`), 0o600)
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, c enclave.Config)
		isErr error
	}{
		{"file only", []string{"--config", conf}, func(t *testing.T, c enclave.Config) {
			if c.Parent != "vsock://3:10809" || strings.Join(c.App.Args(), " ") != "/srv/app -v" || c.RootDir != enclave.DefaultRootDir {
				t.Errorf("config %+v", c)
			}
		}, nil},
		{"control flag", []string{"--config", conf, "--control", "off"}, func(t *testing.T, c enclave.Config) {
			if c.Control != enclave.ControlOff {
				t.Errorf("control %q", c.Control)
			}
		}, nil},
		{"control default", []string{"--config", conf}, func(t *testing.T, c enclave.Config) {
			if c.Control != enclave.DefaultControl {
				t.Errorf("control %q", c.Control)
			}
		}, nil},
		{"bad control", []string{"--config", conf, "--control", "vsock://x:y"}, nil, enclave.ErrConfig},
		{"flags override, args replace the entrypoint", []string{"--config", conf, "--parent", "vsock://1:9000",
			"--key", "random:", "--ephemeral", "--stop-grace", "3s", "--", "/bin/sh", "-c", "true"},
			func(t *testing.T, c enclave.Config) {
				if c.Parent != "vsock://1:9000" || c.Key != "random:" || !c.Ephemeral ||
					time.Duration(c.StopGrace) != 3*time.Second || strings.Join(c.App.Args(), " ") != "/bin/sh -c true" {
					t.Errorf("config %+v", c)
				}
			}, nil},
		{"no file at the default path, flags only", []string{"--key", "file:/k", "--", "/app"}, func(t *testing.T, c enclave.Config) {
			if c.Parent != enclave.DefaultParent || strings.Join(c.App.Args(), " ") != "/app" {
				t.Errorf("config %+v", c)
			}
		}, nil},
		{"explicit missing file", []string{"--config", filepath.Join(dir, "nope.json")}, nil, os.ErrNotExist},
		{"invalid result", []string{"--config", conf, "--key", "random:"}, nil, enclave.ErrConfig},
		{"help", []string{"--help"}, nil, flag.ErrHelp},
	}
	if _, err := os.Stat(enclave.DefaultConfigJSONPath); err == nil {
		t.Skipf("%s exists on this machine and would be read", enclave.DefaultConfigJSONPath)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			c, err := parseConfig(tt.args, &stderr)
			if tt.isErr != nil {
				if !errors.Is(err, tt.isErr) {
					t.Fatalf("parseConfig error %v, want %v", err, tt.isErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseConfig: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestHelpHasExample(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseConfig([]string{"--help"}, &stderr); !errors.Is(err, flag.ErrHelp) {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "Example") || !strings.Contains(stderr.String(), "--parent vsock://1:10809") {
		t.Fatalf("--help lacks an example:\n%s", stderr.String())
	}
}
