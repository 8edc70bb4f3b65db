// Command updateserver runs the update server and is its operator CLI.
// See `updateserver --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dropless/dropless/updateserver/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], cli.IO{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr})
	stop()
	os.Exit(code)
}
