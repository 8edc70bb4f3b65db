// Command updateagent is the site agent: it runs as an OS service, reports
// the version that really runs and applies upgrades. See `updateagent --help`.
package main

import (
	"context"
	"os"

	"github.com/dropless/dropless/agent/internal/cli"
)

func main() {
	// The run command handles SIGINT/SIGTERM through the service library.
	os.Exit(cli.Run(context.Background(), os.Args[1:], cli.IO{Stdout: os.Stdout, Stderr: os.Stderr}))
}
