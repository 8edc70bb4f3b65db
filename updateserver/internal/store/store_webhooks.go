package store

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/dropless/dropless/pkg/protocol"
)

// OutboxEvent is one event to POST to every webhook whose patterns match
// its Type. ID is its webhook-id (the same on every retry); Body the JSON
// sent. Package notify makes them.
type OutboxEvent struct {
	ID, Type string
	Body     []byte
}

// EventMatches reports whether an event of type typ goes to a webhook
// with these patterns: none means every event; "job.*" every event whose
// type starts with "job."; anything else the one type.
func EventMatches(patterns []string, typ string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if p == "*" || p == typ || (strings.HasSuffix(p, ".*") && strings.HasPrefix(typ, strings.TrimSuffix(p, "*"))) {
			return true
		}
	}
	return false
}

// enqueue writes one outbox row per event and enabled webhook that wants
// it, in tx: the events are durable exactly when the change that caused
// them is. Writing an event twice (same ID) is a no-op.
//
// Every write transaction that causes an event calls it (JobTx.Enqueue,
// Store.Enqueue, the Events of Publish, Promote and Yank); a new kind of
// change (rollouts) calls it with its own *sql.Tx.
func enqueue(tx *sql.Tx, now time.Time, evs []OutboxEvent) error {
	if len(evs) == 0 {
		return nil
	}
	rows, err := tx.Query(`SELECT id, events FROM webhooks WHERE disabled_at IS NULL`)
	if err != nil {
		return err
	}
	type hook struct {
		id       int64
		patterns []string
	}
	hooks, err := collect(rows, func(r scanner) (hook, error) {
		var h hook
		var events string
		err := r.Scan(&h.id, &events)
		h.patterns = splitEvents(events)
		return h, err
	})
	if err != nil || len(hooks) == 0 {
		return err
	}
	st, err := tx.Prepare(`INSERT INTO webhook_outbox (webhook_id, msg_id, event_type, body, created_ns, next_ns) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	if err != nil {
		return err
	}
	defer st.Close()
	ns := unixNano(now)
	for _, e := range evs {
		for _, h := range hooks {
			if !EventMatches(h.patterns, e.Type) {
				continue
			}
			if _, err := st.Exec(h.id, e.ID, e.Type, e.Body, ns, ns); err != nil {
				return err
			}
		}
	}
	return nil
}

func splitEvents(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// Enqueue writes events to the outbox in the job transaction.
func (t *JobTx) Enqueue(now time.Time, evs []OutboxEvent) error { return enqueue(t.tx, now, evs) }

// Enqueue writes events to the outbox in a transaction of their own, for
// events whose change is not a store write of this server.
func (s *Store) Enqueue(ctx context.Context, now time.Time, evs []OutboxEvent) error {
	return s.tx(ctx, func(tx *sql.Tx) error { return enqueue(tx, now, evs) })
}

// NewWebhook is a webhook to create.
type NewWebhook struct {
	URL    string
	Events []string
	Secret string
	By     string
}

// CreateWebhook stores a webhook and audits its creation.
func (s *Store) CreateWebhook(ctx context.Context, now time.Time, w NewWebhook) (protocol.Webhook, error) {
	var id int64
	err := s.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRow(`INSERT INTO webhooks (url, events, secret, created_at, created_by) VALUES (?, ?, ?, ?, ?) RETURNING id`,
			w.URL, strings.Join(w.Events, ","), w.Secret, formatTime(now), w.By).Scan(&id)
		if err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, Audit{Actor: w.By, Action: "webhook.create", Object: "webhook " + strconv.FormatInt(id, 10),
			Detail: "url=" + w.URL + " events=" + strings.Join(w.Events, ",")})
	})
	if err != nil {
		return protocol.Webhook{}, err
	}
	return s.Webhook(ctx, id)
}

const webhookColumns = `w.id, w.url, w.events, w.created_at, w.created_by, w.disabled_at, w.last_status, w.last_attempt_at, w.failures,
	(SELECT count(*) FROM webhook_outbox o WHERE o.webhook_id = w.id) FROM webhooks w`

func scanWebhook(r scanner) (protocol.Webhook, error) {
	var w protocol.Webhook
	var events, created string
	var disabled, attempt sql.NullString
	err := r.Scan(&w.ID, &w.URL, &events, &created, &w.CreatedBy, &disabled, &w.LastStatus, &attempt, &w.Failures, &w.Pending)
	w.Events = splitEvents(events)
	w.CreatedAt = parseTime(created)
	w.DisabledAt, w.LastAttemptAt = nullTime(disabled), nullTime(attempt)
	return w, err
}

// Webhook returns one webhook (never its secret); ErrNotFound when none
// has that ID.
func (s *Store) Webhook(ctx context.Context, id int64) (protocol.Webhook, error) {
	w, err := scanWebhook(s.queryRow(ctx, `SELECT `+webhookColumns+` WHERE w.id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return w, ErrNotFound
	}
	return w, err
}

// ListWebhooks returns every webhook, oldest first, never their secrets.
func (s *Store) ListWebhooks(ctx context.Context) ([]protocol.Webhook, error) {
	rows, err := s.query(ctx, `SELECT `+webhookColumns+` ORDER BY w.id`)
	if err != nil {
		return nil, err
	}
	return collect(rows, scanWebhook)
}

// DeleteWebhook removes a webhook and what its outbox still held, and
// audits it; ErrNotFound when none has that ID.
func (s *Store) DeleteWebhook(ctx context.Context, now time.Time, id int64, by string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		var url string
		err := tx.QueryRow(`SELECT url FROM webhooks WHERE id = ?`, id).Scan(&url)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM webhook_outbox WHERE webhook_id = ?`, id); err != nil {
			return err
		}
		if _, err := tx.Exec(`DELETE FROM webhooks WHERE id = ?`, id); err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, Audit{Actor: by, Action: "webhook.delete", Object: "webhook " + strconv.FormatInt(id, 10), Detail: "url=" + url})
	})
}

// Delivery is one outbox row due to be sent, with its webhook's URL and
// secret.
type Delivery struct {
	OutboxID, WebhookID int64
	URL, Secret         string
	MsgID, Type         string
	Body                []byte
	// Attempts made before this one.
	Attempts int
}

// DueDeliveries returns the outbox rows of enabled webhooks due at now,
// up to perHook of each webhook, oldest first: one webhook's backlog does
// not hide the others'.
func (s *Store) DueDeliveries(ctx context.Context, now time.Time, perHook int) ([]Delivery, error) {
	rows, err := s.query(ctx, `SELECT o.id, o.webhook_id, w.url, w.secret, o.msg_id, o.event_type, o.body, o.attempts
		FROM (SELECT *, row_number() OVER (PARTITION BY webhook_id ORDER BY id) AS n FROM webhook_outbox WHERE next_ns <= ?) o
		JOIN webhooks w ON w.id = o.webhook_id
		WHERE o.n <= ? AND w.disabled_at IS NULL ORDER BY o.id`, unixNano(now), perHook)
	if err != nil {
		return nil, err
	}
	return collect(rows, func(r scanner) (Delivery, error) {
		var d Delivery
		err := r.Scan(&d.OutboxID, &d.WebhookID, &d.URL, &d.Secret, &d.MsgID, &d.Type, &d.Body, &d.Attempts)
		return d, err
	})
}

// NextDue returns when the earliest outbox row of an enabled webhook is
// due; false when there is none.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	var ns sql.NullInt64
	err := s.queryRow(ctx, `SELECT min(o.next_ns) FROM webhook_outbox o JOIN webhooks w ON w.id = o.webhook_id WHERE w.disabled_at IS NULL`).Scan(&ns)
	if err != nil || !ns.Valid {
		return time.Time{}, false, err
	}
	return time.Unix(0, ns.Int64), true, nil
}

// Delivered removes a delivered outbox row and records the webhook's
// success.
func (s *Store) Delivered(ctx context.Context, now time.Time, d Delivery, status string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`DELETE FROM webhook_outbox WHERE id = ?`, d.OutboxID); err != nil {
			return err
		}
		_, err := tx.Exec(`UPDATE webhooks SET last_status = ?, last_attempt_at = ?, failures = 0 WHERE id = ?`, status, formatTime(now), d.WebhookID)
		return err
	})
}

// DeliveryFailed records a failed attempt and when to try again.
func (s *Store) DeliveryFailed(ctx context.Context, now time.Time, d Delivery, status string, next time.Time) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.Exec(`UPDATE webhook_outbox SET attempts = attempts + 1, next_ns = ? WHERE id = ?`, unixNano(next), d.OutboxID); err != nil {
			return err
		}
		_, err := tx.Exec(`UPDATE webhooks SET last_status = ?, last_attempt_at = ?, failures = failures + 1 WHERE id = ?`, status, formatTime(now), d.WebhookID)
		return err
	})
}

// DisableWebhook stops deliveries to a webhook whose receiver said it is
// gone (410); its outbox rows stay until it is deleted. Audited as done
// by the server.
func (s *Store) DisableWebhook(ctx context.Context, now time.Time, d Delivery, status string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE webhooks SET disabled_at = ?, last_status = ?, last_attempt_at = ?, failures = failures + 1 WHERE id = ?`,
			formatTime(now), status, formatTime(now), d.WebhookID)
		if err != nil {
			return err
		}
		return insertAudit(ctx, tx, now, Audit{Actor: "updateserver", Action: "webhook.disable", Object: "webhook " + strconv.FormatInt(d.WebhookID, 10),
			Detail: "the receiver answered 410 Gone: url=" + d.URL})
	})
}
