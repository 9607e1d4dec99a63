package nitrocli_test

import (
	"os"
	"testing"

	"github.com/enclave-storage/enclave-storage/nitrocli"
)

// FuzzParse feeds nitro-cli answers, starting from the fake's, to every
// parser: none may panic, and what parses has an enclave ID.
func FuzzParse(f *testing.F) {
	script, err := os.ReadFile("testdata/fake-nitro-cli")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(script)
	f.Add([]byte(`[{"EnclaveID":"i-1","EnclaveCID":16,"State":"RUNNING","Flags":"NONE"}]`))
	f.Add([]byte(`{"EnclaveID":"i-1","EnclaveCID":16,"CPUIDs":[1,3],"MemoryMiB":512}`))
	f.Add([]byte(`{"EnclaveID":"i-1","Terminated":true}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ri, err := nitrocli.ParseRunInfo(b); err == nil && ri.EnclaveID == "" {
			t.Error("run info without ID")
		}
		if es, err := nitrocli.ParseDescribe(b); err == nil {
			for _, e := range es {
				if e.EnclaveID == "" {
					t.Error("enclave without ID")
				}
			}
		}
		if ti, err := nitrocli.ParseTerminate(b); err == nil && ti.EnclaveID == "" {
			t.Error("terminate info without ID")
		}
		nitrocli.ErrorLine(b)
	})
}
