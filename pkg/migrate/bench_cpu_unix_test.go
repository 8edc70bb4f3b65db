//go:build unix

package migrate

import "syscall"

// selfCPU is the CPU time (user and system) this process has used, in
// seconds; childrenCPU that of its children that were waited for.
func selfCPU() float64     { return rusageCPU(syscall.RUSAGE_SELF) }
func childrenCPU() float64 { return rusageCPU(syscall.RUSAGE_CHILDREN) }

func rusageCPU(who int) float64 {
	var r syscall.Rusage
	if err := syscall.Getrusage(who, &r); err != nil {
		return 0
	}
	return float64(r.Utime.Nano()+r.Stime.Nano()) / 1e9
}
