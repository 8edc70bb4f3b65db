package appctl

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/dropless/dropless/agent/internal/config"
)

// The OS service path cannot be tested against a real service manager
// here: a test would need root and a systemd (or SCM, launchd) to register
// a service with. These tests check only that misconfiguration gives clear
// errors; the service path is exercised on real machines by the
// installer tests.
func TestServiceMisconfiguration(t *testing.T) {
	base := config.App{HealthURL: "http://127.0.0.1:9000/health", CommandTimeout: config.Duration{Duration: 10 * time.Second}}
	for _, name := range []string{"acme erp", "../etc/passwd", `acme"erp`, "-acme", strings.Repeat("a", 300)} {
		t.Run(name[:min(len(name), 20)], func(t *testing.T) {
			cfg := base
			cfg.Service = name
			_, err := New(cfg, "/opt/acme", nil)
			if err == nil || !strings.Contains(err.Error(), "app.service") {
				t.Fatalf("New(service %q) = %v, want an error naming app.service", name, err)
			}
		})
	}

	t.Run("unknown service", func(t *testing.T) {
		const name = "dropless-test-no-such-service"
		cfg := base
		cfg.Service = name
		c, err := New(cfg, "/opt/acme", testLogger(t))
		if err != nil {
			// No service manager on this machine (a container): the
			// error must say so and what to do instead.
			t.Logf("New: %v", err)
			if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "app.start") {
				t.Fatalf("New error %q names neither the service nor the alternative", err)
			}
			return
		}
		err = c.Stop(context.Background())
		t.Logf("Stop: %v", err)
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "check app.service") {
			t.Fatalf("Stop of an unknown service = %v, want an error naming it and the config key", err)
		}
	})
}
