//go:build !linux

package publish

import (
	"context"
	"errors"
	"net"
	"os"
	"time"
)

const canSplice = false

func spliceBody(context.Context, *os.File, *fileFeed, *syncBehind, *net.TCPConn, []byte, int64, time.Duration) (int64, error) {
	return 0, errors.ErrUnsupported
}
