package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/client"
)

func newAuditCmd(stdio IO) *cobra.Command {
	var since, actor string
	var limit int
	var before int64
	var asJSON bool
	list := &cobra.Command{
		Use:   "list [--since DURATION|TIME] [--actor NAME] [--limit N] [--before ID] [--json]",
		Short: "Show who did what, when, from which token: the audit log, newest first (admin only)",
		Long: `Show the audit log, newest first: when, who (the token's name, ID and
role, or the server itself, or the enroll token an agent enrolled with),
what they did, to which object, and the details (e.g. the reason of an
upgrade --now).

--since keeps entries of the last DURATION (24h, 90m, 7d) or from an
RFC 3339 time on (2025-06-01T00:00:00Z). --actor keeps the entries of
every token with that name (see token list); for anything else, give the
whole actor as shown (e.g. updateserver). --limit (default 100) shows at
most N entries; when there are more, the command says so on stderr and
--before ID shows the entries older than entry ID.`,
		Args: noArgs,
	}
	list.Flags().StringVar(&since, "since", "", "only entries of the last DURATION (24h, 7d) or since an RFC 3339 time")
	list.Flags().StringVar(&actor, "actor", "", "only entries of tokens with this name (or of this whole actor)")
	list.Flags().IntVar(&limit, "limit", protocol.AuditLimitDefault, "show at most N entries")
	list.Flags().Int64Var(&before, "before", 0, "only entries older than the entry with this ID (the next page)")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	check := func(cmd *cobra.Command, _ []string) error {
		if since != "" {
			if _, err := protocol.ParseSince(since, time.Now()); err != nil {
				return usagef("--since %v", err)
			}
		}
		if cmd.Flags().Changed("actor") && strings.TrimSpace(actor) == "" {
			return usagef("--actor needs a token's name (see token list)")
		}
		if limit < 1 {
			return usagef("--limit must be at least 1")
		}
		if before < 0 {
			return usagef("--before must be the ID of an audit entry")
		}
		return nil
	}
	apiRun(list, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		entries, more, err := auditEntries(cmd, c, client.AuditQuery{Since: since, Actor: actor, Before: before}, limit)
		if err != nil {
			return err
		}
		if asJSON {
			err = printJSON(stdio.Stdout, entries)
		} else {
			rows := make([][]string, 0, len(entries))
			for _, e := range entries {
				rows = append(rows, []string{e.At.Local().Format("2006-01-02 15:04:05"), cell(e.Actor), cell(e.Action), cell(e.Object), cell(orDash(e.Detail))})
			}
			err = table(stdio.Stdout, []string{"WHEN", "ACTOR", "ACTION", "OBJECT", "DETAIL"}, rows)
		}
		if err == nil && more {
			fmt.Fprintf(stdio.Stderr, "updateserver: showing the newest %d entries: older ones with --before %d\n", len(entries), entries[len(entries)-1].ID)
		}
		return err
	})
	return group("audit", "The audit log: who did what, when, from which token", list)
}

// auditEntries fetches up to limit entries of q, page by page, and reports
// whether there are more.
func auditEntries(cmd *cobra.Command, c *client.Client, q client.AuditQuery, limit int) ([]protocol.AuditEntry, bool, error) {
	out := []protocol.AuditEntry{}
	want := limit + 1 // one more, to tell whether there are more
	for len(out) < want {
		q.Limit = min(want-len(out), protocol.AuditLimitMax)
		page, err := c.AuditLog(cmd.Context(), q)
		if err != nil {
			return nil, false, err
		}
		out = append(out, page...)
		if len(page) < q.Limit {
			break
		}
		q.Before = page[len(page)-1].ID
	}
	if len(out) > limit {
		return out[:limit], true, nil
	}
	return out, false, nil
}

// cell shows s on one table line: anything not printable (a newline in a
// reason, a terminal escape or a bidi override in a name) is shown
// escaped, never obeyed.
func cell(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
