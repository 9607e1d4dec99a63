// Command kmodinit is the stand-in for nbd-enclave that
// TestBootEIFLoadsModules boots as PID 1 from an EIF's ramdisks: it loads
// the modules the bootstrap ramdisk carries, as nbd-enclave does, prints
// what it loaded and what /proc/modules then says, and powers off.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/enclave-storage/enclave-storage/kmod"
)

func main() {
	loaded, err := kmod.Load(context.Background(), "/")
	if merr := syscall.Mount("proc", "/proc", "proc", 0, ""); merr != nil {
		fmt.Println("mount /proc:", merr)
	}
	var mods []string
	if b, rerr := os.ReadFile("/proc/modules"); rerr == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			mods = append(mods, strings.Fields(l)[0])
		}
	}
	fmt.Printf("KMOD-TEST loaded=%s err=%v\n", strings.Join(loaded, ","), err)
	fmt.Printf("KMOD-TEST proc=%s\n", strings.Join(mods, ","))
	fmt.Printf("KMOD-TEST argv=%q\n", os.Args)
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
}
