//go:build !linux

package main

// setNoPort: only Linux has IP_BIND_ADDRESS_NO_PORT; elsewhere bind()
// takes a port per source address.
func setNoPort(uintptr) error { return nil }
