//go:build failstart || hangstart

package main

import (
	"fmt"
	"os"
)

// Test-only builds of the agent (go build -tags failstart or hangstart):
// `updateagent run` exits at once, or hangs without ever checking in, as a
// broken release would. The self-update tests publish such a build to
// check that it is rolled back; every other command works, so the build
// passes the version check before the swap.
func init() {
	if len(os.Args) < 2 || os.Args[1] != "run" {
		return
	}
	if hang {
		fmt.Fprintln(os.Stderr, "updateagent built with -tags hangstart: hanging at start")
		select {}
	}
	fmt.Fprintln(os.Stderr, "updateagent built with -tags failstart: exiting at start")
	os.Exit(4)
}
