// Command updateagent is the site agent. This first cut only reports its
// version; the service, check-in and upgrade engine follow.
package main

import (
	"fmt"
	"os"

	"github.com/dropless/dropless/pkg/buildinfo"
)

const usage = `updateagent: the on-premise upgrade agent

Usage:
  updateagent version    print the agent's version

The agent's service, check-in and upgrade commands are not built yet.
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, usage)
		return 2
	}
	switch args[0] {
	case "version", "--version":
		fmt.Println(buildinfo.String())
		return 0
	case "-h", "--help", "help":
		fmt.Print(usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "updateagent: unknown command %q (see --help)\n", args[0])
	return 2
}
