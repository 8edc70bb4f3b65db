package appctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/dropless/dropless/agent/internal/proc"
)

// runner runs the configured commands: argv without a shell, in workDir,
// bounded by timeout, output logged line by line.
type runner struct {
	workDir string
	timeout time.Duration
	log     *slog.Logger
	level   slog.Level // of the command's log records; Info unless set
}

// drainGrace is how long run waits, after the command exited, for its
// output to end. A start command that leaves a background process holding
// its output (`./app &` without a redirect) returns after this; the output
// keeps being logged while that process writes it.
const drainGrace = time.Second

// maxLine bounds one logged line of output; longer lines are cut.
const maxLine = 4096

// run runs argv (what names it in logs and errors, e.g. "app.start") and
// returns the last non-empty line of its combined output. When workDir does
// not exist and parentOK is set, it runs in workDir's parent (the install
// dir): a stop with nothing installed.
//
// On timeout the command's whole process group (on Windows its process
// tree) is killed, so a start command that hangs does not leave its
// children behind.
func (r *runner) run(ctx context.Context, what string, argv []string, parentOK bool) (string, error) {
	if len(argv) == 0 || argv[0] == "" {
		return "", fmt.Errorf("%s: no command configured", what)
	}
	dir := r.workDir
	if _, err := os.Stat(dir); err != nil {
		if !errors.Is(err, fs.ErrNotExist) || !parentOK {
			return "", fmt.Errorf("%s: working directory: %w (is a release installed?)", what, err)
		}
		dir = filepath.Dir(dir)
	}

	cctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(cctx, argv[0], argv[1:]...)
	cmd.Dir = dir
	// After the kill, do not wait for ever on a process that escaped the
	// group.
	cmd.WaitDelay = 5 * time.Second
	log := r.log.With("cmd", what)
	log.Log(ctx, r.level, "running command", "argv", argv, "dir", dir, "timeout", r.timeout)
	start := time.Now()
	out := &proc.Lines{Log: log, Level: r.level, Msg: "output", Max: maxLine}
	werr := proc.Run(cmd, out, drainGrace, "the command left a process behind that still holds its output; "+
		"redirect the application's output (e.g. >app.log 2>&1) so it does not depend on the agent")
	last := out.LastLine()
	var se *proc.StartError
	if errors.As(werr, &se) {
		return "", fmt.Errorf("%s: cannot run %q: %w", what, argv[0], se.Err)
	}

	switch {
	case ctx.Err() != nil:
		return last, ctx.Err()
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return last, fmt.Errorf("%s %q did not finish within %s: killed it and its child processes", what, argv[0], r.timeout)
	case werr != nil:
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			msg := fmt.Sprintf("%s exited %d", what, ee.ExitCode())
			if ee.ExitCode() < 0 {
				msg = fmt.Sprintf("%s ended: %v", what, ee.ProcessState)
			}
			if last != "" {
				msg += ": " + last
			}
			return last, errors.New(msg)
		}
		if errors.Is(werr, exec.ErrWaitDelay) {
			return last, nil
		}
		return last, fmt.Errorf("%s: %w", what, werr)
	}
	log.Log(ctx, r.level, "command finished", "took", time.Since(start).Round(time.Millisecond))
	return last, nil
}
