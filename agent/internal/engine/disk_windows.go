//go:build windows

package engine

import (
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"
)

var procGetDiskFreeSpaceEx = syscall.NewLazyDLL("kernel32.dll").NewProc("GetDiskFreeSpaceExW")

// freeSpace returns the bytes available to the agent on the volume holding
// dir, and whether it could tell.
func freeSpace(dir string) (uint64, bool, error) {
	p, err := syscall.UTF16PtrFromString(dir)
	if err != nil {
		return 0, false, err
	}
	var avail, total, free uint64
	r, _, err := procGetDiskFreeSpaceEx.Call(uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&avail)), uintptr(unsafe.Pointer(&total)), uintptr(unsafe.Pointer(&free)))
	if r == 0 {
		return 0, false, err
	}
	return avail, true, nil
}

// sameFileSystem reports whether a and b are on one volume (by volume
// name), and whether it could tell.
func sameFileSystem(a, b string) (same, known bool) {
	va, vb := filepath.VolumeName(a), filepath.VolumeName(b)
	if va == "" || vb == "" {
		return false, false
	}
	return strings.EqualFold(va, vb), true
}
