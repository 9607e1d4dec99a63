package imgbuild

import "testing"

func TestEIFImageName(t *testing.T) {
	for _, tt := range []struct{ ref, want string }{
		{"docker://app:latest", "app"},
		{"docker://registry.example:5000/team/app:1.2", "registry.example:5000/team/app"},
		{"docker://registry.example:5000/team/app", "registry.example:5000/team/app"},
		{"docker://app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "app"},
		{"docker-daemon:app:1.0", "app"},
		{"oci-archive:app.tar", "app.tar"},
		{"oci-archive:/srv/images/app.tar", "/srv/images/app.tar"},
		{"oci:layout:app", "layout"},
		{"oci:/tmp/x/layout", "/tmp/x/layout"},
		{"app", "app"},
	} {
		if got := eifImageName(tt.ref); got != tt.want {
			t.Errorf("eifImageName(%q) = %q, want %q", tt.ref, got, tt.want)
		}
	}
}
