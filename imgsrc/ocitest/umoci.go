package ocitest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// ErrNoUmoci reports that umoci is not installed: callers skip.
var ErrNoUmoci = errors.New("umoci not installed")

// Bundle is what umoci made of an image: the root filesystem's directory
// and, from the runtime configuration, the process and the annotations
// (the image's labels).
type Bundle struct {
	Root        string
	Args        []string
	Cwd         string
	Annotations map[string]string
}

// UmociUnpack unpacks image ("DIR:TAG", an OCI layout) into the new
// directory dir with "umoci unpack --rootless", a reader of images we did
// not write, and reads the bundle's config.json.
func UmociUnpack(image, dir string) (*Bundle, error) {
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		return nil, ErrNoUmoci
	}
	if out, err := exec.Command(umoci, "unpack", "--rootless", "--image", image, dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("umoci unpack %s: %w\n%s", image, err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	var rt struct {
		Process struct {
			Args []string `json:"args"`
			Cwd  string   `json:"cwd"`
		} `json:"process"`
		Annotations map[string]string `json:"annotations"`
	}
	if err := json.Unmarshal(b, &rt); err != nil {
		return nil, fmt.Errorf("umoci's config.json: %w", err)
	}
	return &Bundle{Root: filepath.Join(dir, "rootfs"), Args: rt.Process.Args, Cwd: rt.Process.Cwd, Annotations: rt.Annotations}, nil
}
