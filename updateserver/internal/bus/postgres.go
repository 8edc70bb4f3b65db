package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultChannel is the PostgreSQL notification channel of the bus.
const DefaultChannel = "dropless_bus"

// Postgres is the bus of replicas sharing one PostgreSQL database.
// A notification's payload is "SENDER TOPIC\nPAYLOAD": a replica skips
// its own (it woke its parts in process already).
type Postgres struct {
	DSN     string
	Channel string // DefaultChannel when ""
	Log     *slog.Logger

	once sync.Once
	id   string // this replica, in the payloads it sends
	subs subs

	sendMu sync.Mutex
	send   *pgx.Conn // for Send; the LISTEN connection is Run's own

	connected chan struct{} // closed once Run first listens
}

func (p *Postgres) init() {
	p.once.Do(func() {
		b := make([]byte, 8)
		rand.Read(b)
		p.id = hex.EncodeToString(b)
		p.connected = make(chan struct{})
	})
}

func (p *Postgres) channel() string {
	if p.Channel != "" {
		return p.Channel
	}
	return DefaultChannel
}

func (p *Postgres) encode(m Msg) string {
	p.init()
	return p.id + " " + m.Topic + "\n" + m.Payload
}

// InTx sends msgs with pg_notify in the transaction exec runs in.
// All of them in one statement (one round trip: the store's writer holds
// every replica's write lock meanwhile); PostgreSQL delivers them in the
// order given.
func (p *Postgres) InTx(exec Exec, msgs ...Msg) error {
	if len(msgs) == 0 {
		return nil
	}
	calls := make([]string, len(msgs))
	args := make([]any, 0, 2*len(msgs))
	topics := make([]string, len(msgs))
	for i, m := range msgs {
		calls[i] = "pg_notify(?, ?)"
		args = append(args, p.channel(), p.encode(m))
		topics[i] = m.Topic
	}
	if err := exec(`SELECT `+strings.Join(calls, ", "), args...); err != nil {
		return fmt.Errorf("bus: notify %s: %w", strings.Join(topics, ", "), err)
	}
	return nil
}

// Send sends msgs now, on a connection of its own.
func (p *Postgres) Send(ctx context.Context, msgs ...Msg) error {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	for attempt := 0; ; attempt++ {
		err := p.sendOnce(ctx, msgs)
		if err == nil || attempt == 1 || ctx.Err() != nil {
			return err
		}
		// A broken connection (the database restarted): once more on a
		// new one.
		if p.send != nil {
			p.send.Close(context.Background())
			p.send = nil
		}
	}
}

func (p *Postgres) sendOnce(ctx context.Context, msgs []Msg) error {
	if p.send == nil {
		c, err := pgx.Connect(ctx, p.DSN)
		if err != nil {
			return fmt.Errorf("bus: connect: %w", err)
		}
		p.send = c
	}
	for _, m := range msgs {
		if _, err := p.send.Exec(ctx, `SELECT pg_notify($1, $2)`, p.channel(), p.encode(m)); err != nil {
			return fmt.Errorf("bus: notify %s: %w", m.Topic, err)
		}
	}
	return nil
}

// Subscribe calls fn with the messages on topic from other replicas, and
// with Resync after a reconnect.
func (p *Postgres) Subscribe(topic string, fn func(string)) func() {
	return p.subs.subscribe(topic, fn)
}

// Listening is closed once Run listens for the first time.
func (p *Postgres) Listening() <-chan struct{} {
	p.init()
	return p.connected
}

// Run listens until ctx ends, on one connection of its own, reconnecting
// with backoff (100 ms doubling to 5 s) when it breaks; after each
// reconnect every subscriber gets Resync.
func (p *Postgres) Run(ctx context.Context) {
	p.init()
	defer func() {
		p.sendMu.Lock()
		if p.send != nil {
			p.send.Close(context.Background())
			p.send = nil
		}
		p.sendMu.Unlock()
	}()
	backoff := 100 * time.Millisecond
	first := true
	for ctx.Err() == nil {
		err := p.listen(ctx, func() {
			backoff = 100 * time.Millisecond
			if first {
				first = false
				close(p.connected)
				return
			}
			if p.Log != nil {
				p.Log.Info("bus: listening again; waking everything (notifications may have been missed)")
			}
			p.subs.deliver("", Resync)
		})
		if ctx.Err() != nil {
			return
		}
		if p.Log != nil {
			p.Log.Warn("bus: connection lost; reconnecting", "err", err, "in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// listen connects, LISTENs, calls ready, and delivers notifications until
// the connection breaks or ctx ends.
func (p *Postgres) listen(ctx context.Context, ready func()) error {
	c, err := pgx.Connect(ctx, p.DSN)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{p.channel()}.Sanitize()); err != nil {
		return err
	}
	ready()
	for {
		n, err := c.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		p.dispatch(n.Payload)
	}
}

// dispatch delivers one notification's message, unless this replica sent
// it. A payload not in the bus's format is ignored.
func (p *Postgres) dispatch(raw string) {
	head, payload, ok := strings.Cut(raw, "\n")
	if !ok {
		return
	}
	sender, topic, ok := strings.Cut(head, " ")
	if !ok || sender == p.id || topic == "" {
		return
	}
	p.subs.deliver(topic, payload)
}
