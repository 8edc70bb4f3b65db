package bus

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func testDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("TEST_POSTGRES_DSN")
	if dsn == "" {
		t.Skip("TEST_POSTGRES_DSN is unset: set it to a PostgreSQL database to test the bus (CI does: make test-postgres)")
	}
	return dsn
}

// replica is one replica's bus, listening, with what it received.
type replica struct {
	bus  *Postgres
	got  chan string
	stop func()
}

func startReplica(t *testing.T, dsn, channel string) *replica {
	t.Helper()
	r := &replica{bus: &Postgres{DSN: dsn, Channel: channel}, got: make(chan string, 100)}
	for _, topic := range []string{Wake, Ended} {
		r.bus.Subscribe(topic, func(p string) { r.got <- topic + ":" + p })
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.bus.Run(ctx) }()
	r.stop = func() { cancel(); <-done }
	t.Cleanup(r.stop)
	select {
	case <-r.bus.Listening():
	case <-time.After(30 * time.Second):
		t.Fatal("the bus did not connect to PostgreSQL")
	}
	return r
}

func (r *replica) next(t *testing.T) string {
	t.Helper()
	select {
	case m := <-r.got:
		return m
	case <-time.After(30 * time.Second):
		t.Fatal("no message arrived")
		return ""
	}
}

// TestPostgresBus: a message sent by one replica reaches the other (not
// itself); one sent in a transaction arrives when it commits and never
// when it rolls back; after its LISTEN connection is killed a replica
// reconnects, resyncs, and hears messages again.
func TestPostgresBus(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	channel := fmt.Sprintf("dropless_bus_test_%d", time.Now().UnixNano())
	a := startReplica(t, dsn, channel)
	b := startReplica(t, dsn, channel)

	if err := a.bus.Send(ctx, Msg{Wake, "site-1\nsite-2"}); err != nil {
		t.Fatal(err)
	}
	if got := b.next(t); got != "wake:site-1\nsite-2" {
		t.Fatalf("b got %q", got)
	}

	// In a transaction: the rolled-back one never arrives; a's own
	// message does not come back to a.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	inTx := func(payload string, commit bool) {
		t.Helper()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		exec := func(q string, args ...any) error {
			_, err := tx.Exec(ctx, strings.Replace(strings.Replace(q, "?", "$1", 1), "?", "$2", 1), args...)
			return err
		}
		if err := a.bus.InTx(exec, Msg{Ended, payload}); err != nil {
			t.Fatal(err)
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	inTx("acme\trolled-back", false)
	inTx("acme\tcommitted", true)
	if got := b.next(t); got != "ended:acme\tcommitted" {
		t.Fatalf("b got %q, want the committed message only", got)
	}
	if err := b.bus.Send(ctx, Msg{Wake, "from-b"}); err != nil {
		t.Fatal(err)
	}
	if got := a.next(t); got != "wake:from-b" {
		t.Fatalf("a got %q (its own message came back?)", got)
	}

	// Kill b's LISTEN connection (the database restarted, a network
	// cut): b reconnects and resyncs its subscribers.
	tag, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1`,
		"LISTEN "+pgx.Identifier{channel}.Sanitize())
	if err != nil {
		t.Fatal(err)
	}
	if tag.RowsAffected() != 2 {
		t.Fatalf("killed %d LISTEN connections, want a's and b's", tag.RowsAffected())
	}
	for _, r := range []*replica{a, b} {
		seen := map[string]bool{}
		for len(seen) < 2 {
			seen[r.next(t)] = true
		}
		if !seen["wake:"+Resync] || !seen["ended:"+Resync] {
			t.Fatalf("after the reconnect the subscribers got %v, want Resync on every topic", seen)
		}
	}
	if err := a.bus.Send(ctx, Msg{Wake, "after"}); err != nil {
		t.Fatal(err)
	}
	if got := b.next(t); got != "wake:after" {
		t.Fatalf("b got %q after reconnecting", got)
	}
}

// TestLines: payloads stay under PostgreSQL's limit and keep every item.
func TestLines(t *testing.T) {
	var sites []string
	for i := range 3000 {
		sites = append(sites, fmt.Sprintf("site-%05d", i))
	}
	msgs := Lines(Wake, sites)
	var back []string
	for _, m := range msgs {
		if len(m.Payload) > maxPayload || m.Topic != Wake {
			t.Fatalf("payload of %d bytes on %q", len(m.Payload), m.Topic)
		}
		back = append(back, strings.Split(m.Payload, "\n")...)
	}
	if len(msgs) < 2 || strings.Join(back, ",") != strings.Join(sites, ",") {
		t.Fatalf("%d messages carry %d sites, want all 3000 in order", len(msgs), len(back))
	}
}
