package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/dropless/dropless/agent/internal/proc"
)

// Hooks are the executables of a bundle's hooks/, kept with the release's
// record in the data dir (<data_dir>/releases/<version>/hooks/) and run
// from there:
//
//	pre-stop    in stopping, right before the old release is stopped (it still runs;
//	            not run on a fresh site, where nothing runs)
//	post-stage  in staging, once releases/<version> holds the new files
//	post-start  in starting, once the new release was started, before its health check
//
// Each runs with the install dir as working directory, the agent's
// environment plus FROM_VERSION, TO_VERSION, INSTALL_DIR, RELEASE_DIR
// (<install_dir>/releases/<to>; it exists from post-stage on, or earlier
// when a kept release is re-installed) and DATA_DIR (the agent's data
// dir), and the manifest's [hooks] timeout (bundle.DefaultHookTimeout
// when unset): past it the hook and every process it started are killed.
// Its output goes to the agent's log line by line. A hook that fails
// (exits non-zero, cannot start, times out) fails its step, and the job
// rolls back; the rolling_back event names the hook and ends with its last
// lines of output.
//
// A pre-stop hook that fails also rolls back (rather than ending the job
// failed as if nothing happened): it ran against the live application and
// may have changed it (drained it, put it in maintenance mode), so the old
// release is stopped, started again and health-checked. Hooks are never
// run during a rollback.

// hookTailLines is how many of a failing hook's last output lines its
// error carries.
const hookTailLines = 5

// hookLineMax bounds one line of hook output in logs and errors.
const hookLineMax = 400

// hookKillGrace is how long a killed hook's output may take to end.
const hookKillGrace = 5 * time.Second

// runHook runs the hook name of the job's bundle, if it has one.
func (jb *job) runHook(ctx context.Context, name string) error {
	if !jb.meta.hasHook(name) {
		return nil
	}
	timeout := jb.meta.manifest().Hooks.TimeoutDuration()
	env := []string{
		"FROM_VERSION=" + jb.rec.From,
		"TO_VERSION=" + jb.rec.To,
		"INSTALL_DIR=" + jb.installDir,
		"RELEASE_DIR=" + jb.release(),
		"DATA_DIR=" + jb.dataDir,
	}
	return runHookCmd(ctx, metaHookPath(jb.dataDir, jb.rec.To, name), name, jb.installDir, env, timeout, jb.log.With("hook", name))
}

// runHookCmd runs the executable at p as hook name.
func runHookCmd(ctx context.Context, p, name, dir string, env []string, timeout time.Duration, log *slog.Logger) error {
	if fi, err := os.Stat(p); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("hook %s: missing from the release's record in the data dir (%s)", name, p)
		}
		return fmt.Errorf("hook %s: %w", name, err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("hook %s: %s is not a regular file", name, p)
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(hctx, p)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = hookKillGrace
	log.Info("running hook", "path", p, "timeout", timeout)
	start := time.Now()
	tail := &proc.Lines{Log: log, Msg: "hook output", Max: hookLineMax, Keep: hookTailLines}
	werr := proc.Run(cmd, tail, time.Second, "the hook left a process behind that still holds its output")
	var se *proc.StartError
	if errors.As(werr, &se) {
		return fmt.Errorf("hook %s: cannot run %s: %w", name, p, se.Err)
	}
	out := strings.Join(tail.Last(), " | ")
	if out != "" {
		out = ": " + out
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(hctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("hook %s did not finish within %s ([hooks] timeout of the bundle): killed it and its child processes%s", name, timeout, out)
	case werr != nil:
		var ee *exec.ExitError
		if errors.As(werr, &ee) {
			if ee.ExitCode() < 0 {
				return fmt.Errorf("hook %s ended: %v%s", name, ee.ProcessState, out)
			}
			return fmt.Errorf("hook %s exited %d%s", name, ee.ExitCode(), out)
		}
		if !errors.Is(werr, exec.ErrWaitDelay) {
			return fmt.Errorf("hook %s: %w", name, werr)
		}
	}
	log.Info("hook finished", "took", time.Since(start).Round(time.Millisecond))
	return nil
}
