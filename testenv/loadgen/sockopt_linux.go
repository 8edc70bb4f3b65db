package main

import "syscall"

// ipBindAddressNoPort (IP_BIND_ADDRESS_NO_PORT, Linux 4.2+) lets bind()
// choose the source address only: the port is picked at connect() time,
// per destination, so each source address offers the whole ephemeral
// range to each server.
const ipBindAddressNoPort = 24

func setNoPort(fd uintptr) error {
	return syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
}
