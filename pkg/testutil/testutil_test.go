package testutil

import (
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
)

func TestLog(t *testing.T) {
	l := NewLog(t, slog.LevelInfo)
	l.Logger().Debug("dropped")
	l.Logger().Info("enrolled", "site", "acme-prod")
	l.Logger().Warn("other")
	if got := l.Lines("enrolled"); len(got) != 1 || !strings.Contains(got[0], "site=acme-prod") {
		t.Fatalf("Lines(enrolled) = %q", got)
	}
	if got := l.Lines("dropped"); len(got) != 0 {
		t.Errorf("a Debug record was kept at Info: %q", got)
	}
	if got := len(l.Lines("level=")); got != 2 {
		t.Errorf("%d records, want 2", got)
	}
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
	if err != nil {
		t.Fatalf("FreePort %d is not free: %v", p, err)
	}
	ln.Close()
}
