package overlay

import "testing"

const testPasswd = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nbroken:x:abc:1\n"

func TestLookupUser(t *testing.T) {
	tests := []struct {
		name     string
		uid, gid uint32
		ok       bool
	}{
		{"root", 0, 0, true},
		{"app", 1000, 1001, true},
		{"1000", 1000, 1001, true}, // numeric uid found in passwd takes its gid
		{"4242", 4242, 0, true},    // numeric uid not in passwd
		{"nobody", 0, 0, false},
		{"broken", 0, 0, false},
		{"", 0, 0, false},
	}
	for _, tt := range tests {
		uid, gid, err := LookupUser([]byte(testPasswd), tt.name)
		if tt.ok != (err == nil) || uid != tt.uid || gid != tt.gid {
			t.Errorf("LookupUser(%q) = %d, %d, %v; want %d, %d, ok=%v", tt.name, uid, gid, err, tt.uid, tt.gid, tt.ok)
		}
	}
}

func TestLookupGroup(t *testing.T) {
	groups := []byte("root:x:0:\nstaff:x:50:\nbad:x:z:\n")
	tests := []struct {
		name string
		gid  uint32
		ok   bool
	}{{"staff", 50, true}, {"77", 77, true}, {"bad", 0, false}, {"none", 0, false}}
	for _, tt := range tests {
		gid, err := LookupGroup(groups, tt.name)
		if tt.ok != (err == nil) || gid != tt.gid {
			t.Errorf("LookupGroup(%q) = %d, %v; want %d, ok=%v", tt.name, gid, err, tt.gid, tt.ok)
		}
	}
}

// FuzzLookupUser: /etc/passwd and /etc/group come from the image.
func FuzzLookupUser(f *testing.F) {
	f.Add([]byte(testPasswd), "app")
	f.Add([]byte("::::\n:"), "")
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		LookupUser(data, name)
		LookupGroup(data, name)
	})
}
