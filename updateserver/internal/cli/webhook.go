package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/dropless/dropless/pkg/protocol"
	"github.com/dropless/dropless/updateserver/internal/client"
)

func newWebhookCmd(stdio IO) *cobra.Command {
	var url, events, secret string
	create := &cobra.Command{
		Use:   "create --url URL [--events job.*,rollout.*] [--secret whsec_BASE64]",
		Short: "POST events to URL, signed (admin only); prints the webhook's ID and secret",
		Long: `Create a webhook: the server POSTs each event it matches to URL as JSON
with a "text" line that Slack and Mattermost show, signed as Standard
Webhooks says (headers webhook-id, webhook-timestamp, webhook-signature),
and retries with backoff until URL answers 2xx, across restarts, with the
same webhook-id every time (deduplicate on it). 429 and 503 answers with
Retry-After are honoured; 410 Gone disables the webhook.

--events: comma-separated types or families; default every event:
  job.started job.succeeded job.rolled_back job.failed
  release.published release.promoted release.yanked
  rollout.started rollout.wave_started rollout.paused rollout.completed rollout.cancelled
  (job.*, release.*, rollout.* name a family)
--secret: whsec_ and base64 of 24 to 64 bytes; without it one is made.
Prints the ID, then the secret: keep the secret, webhook list never
shows it. URL must be http:// or https://; redirects are not followed.`,
		Args: noArgs,
	}
	create.Flags().StringVar(&url, "url", "", "where to POST events (http:// or https://)")
	create.Flags().StringVar(&events, "events", "", "comma-separated event types or families (job.*); default: all")
	create.Flags().StringVar(&secret, "secret", "", "signing secret whsec_BASE64; default: a new random one")
	check := func(cmd *cobra.Command, _ []string) error {
		if err := required(cmd, "url"); err != nil {
			return err
		}
		if secret != "" && !strings.HasPrefix(secret, "whsec_") {
			return usagef("--secret must start with whsec_ followed by base64 (or leave it out and the server makes one)")
		}
		return nil
	}
	apiRun(create, stdio, check, func(cmd *cobra.Command, _ []string, c *client.Client) error {
		req := protocol.CreateWebhookRequest{URL: url, Secret: secret}
		for _, e := range strings.Split(events, ",") {
			if e = strings.TrimSpace(e); e != "" {
				req.Events = append(req.Events, e)
			}
		}
		h, err := c.CreateWebhook(cmd.Context(), req)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdio.Stdout, "%d\n%s\n", h.ID, h.Secret)
		return nil
	})

	list := &cobra.Command{
		Use:   "list [--json]",
		Short: "List webhooks with their last delivery status and failures (admin only; never their secrets)",
		Args:  noArgs,
	}
	showRun(list, stdio, nil, func(ctx context.Context, c *client.Client, _ []string) ([]protocol.Webhook, error) {
		return c.Webhooks(ctx)
	}, func(hooks []protocol.Webhook) error {
		rows := make([][]string, 0, len(hooks))
		for _, h := range hooks {
			ev, last := "(all)", "-"
			if len(h.Events) > 0 {
				ev = strings.Join(h.Events, ",")
			}
			if h.LastAttemptAt != nil {
				last = h.LastStatus + " " + ago(*h.LastAttemptAt)
			}
			if h.DisabledAt != nil {
				last += " (disabled: the receiver answered 410)"
			}
			rows = append(rows, []string{strconv.FormatInt(h.ID, 10), h.URL, ev, last, strconv.FormatInt(h.Failures, 10), strconv.FormatInt(h.Pending, 10)})
		}
		return table(stdio.Stdout, []string{"ID", "URL", "EVENTS", "LAST DELIVERY", "FAILURES", "PENDING"}, rows)
	})

	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a webhook and the events still waiting for it (admin only)",
		Args:  exactArgs(1, "the webhook ID (see webhook list)"),
	}
	idRun(del, stdio, "webhook ID %q is not a number: see webhook list", "webhook %d deleted", (*client.Client).DeleteWebhook)
	return group("webhook", "Webhooks: events POSTed to chat tools and other receivers", create, list, del)
}
