package imgsrc

import "testing"

func TestTransportName(t *testing.T) {
	for _, tc := range []struct{ ref, want string }{
		{"oci-archive:/tmp/a.tar", "oci-archive:/tmp/a.tar"},
		{"oci-archive:/tmp/a.tar:app", "oci-archive:/tmp/a.tar:app"},
		{"oci:/tmp/layout:tag", "oci:/tmp/layout:tag"},
		{"docker-archive:/tmp/a.tar", "docker-archive:/tmp/a.tar"},
		{"docker://registry.example.com/a/b:c", "docker://registry.example.com/a/b:c"},
	} {
		refs, err := ParseReference(tc.ref)
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		if got := transportName(refs[0]); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.ref, got, tc.want)
		}
	}
}
