package appctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"github.com/kardianos/service"
)

// osService controls an existing OS service by name through
// kardianos/service: systemd, SysV, upstart, OpenRC, the Windows service
// control manager, launchd. The agent never installs or changes that
// service; it only stops and starts it.
type osService struct {
	name    string
	svc     service.Service
	timeout time.Duration
	health  *health
	log     *slog.Logger
}

// noop is the service.Interface of a service this process does not run:
// kardianos/service needs one to build a controller.
type noop struct{}

func (noop) Start(service.Service) error { return nil }
func (noop) Stop(service.Service) error  { return nil }

func newService(name string, timeout time.Duration, h *health, log *slog.Logger) (*osService, error) {
	if err := validServiceName(name); err != nil {
		return nil, err
	}
	svc, err := service.New(noop{}, &service.Config{Name: name})
	if errors.Is(err, service.ErrNoServiceSystemDetected) {
		return nil, fmt.Errorf("app.service %q: no OS service manager found on this machine (systemd, SysV, upstart, OpenRC, Windows SCM or launchd); use app.start and app.stop commands instead", name)
	}
	if err != nil {
		return nil, fmt.Errorf("app.service %q: %w", name, err)
	}
	return &osService{name: name, svc: svc, timeout: timeout, health: h, log: log.With("service", name, "platform", svc.Platform())}, nil
}

// validServiceName refuses names that no service manager accepts, or that
// would be read as a path or several arguments.
func validServiceName(name string) error {
	if len(name) > 256 {
		return fmt.Errorf("app.service %q: longer than 256 characters", name)
	}
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("app.service %q: must not start with '-'", name)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || unicode.IsControl(r) || strings.ContainsRune(`/\"'`, r) {
			return fmt.Errorf("app.service %q: not a service name (no spaces, quotes or slashes; give the name as the service manager knows it, e.g. acme-erp)", name)
		}
	}
	return nil
}

func (s *osService) Stop(ctx context.Context) error {
	return s.do(ctx, "stop", s.svc.Stop)
}

func (s *osService) Start(ctx context.Context) error {
	return s.do(ctx, "start", s.svc.Start)
}

func (s *osService) Healthy(ctx context.Context) error { return s.health.wait(ctx) }

// do runs a service manager action with the command timeout. The calls of
// kardianos/service take no context: on timeout or cancellation do returns
// and the call finishes in the background.
func (s *osService) do(ctx context.Context, action string, f func() error) error {
	s.log.Info("service " + action)
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	var err error
	select {
	case err = <-ch:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return fmt.Errorf("%s service %q (%s): no answer within %s", action, s.name, s.svc.Platform(), s.timeout)
	}
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf("%s service %q (%s): %v", action, s.name, s.svc.Platform(), err)
	// Ask why: the most common cause is a misspelt name.
	if s.unknown() {
		msg += fmt.Sprintf("; the service manager knows no service named %q: check app.service in the agent's config", s.name)
	}
	return errors.New(msg)
}

// unknown reports whether the service manager surely does not know the
// service. It only adds a hint to an error: kardianos/service's Status
// says "not installed" for any SysV script it did not write itself, so on
// SysV the init script is looked for instead.
func (s *osService) unknown() bool {
	if strings.Contains(s.svc.Platform(), "systemv") {
		_, err := os.Stat(filepath.Join("/etc/init.d", s.name))
		return errors.Is(err, fs.ErrNotExist)
	}
	_, err := s.svc.Status()
	return errors.Is(err, service.ErrNotInstalled)
}
