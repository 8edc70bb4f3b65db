package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/dropless/dropless/pkg/protocol"
)

// CreateWebhook creates a webhook; the answer holds its secret.
func (c *Client) CreateWebhook(ctx context.Context, req protocol.CreateWebhookRequest) (protocol.CreateWebhookResponse, error) {
	var out protocol.CreateWebhookResponse
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/webhooks", req, &out)
	return out, err
}

// Webhooks lists the webhooks.
func (c *Client) Webhooks(ctx context.Context) ([]protocol.Webhook, error) {
	var out []protocol.Webhook
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/webhooks", nil, &out)
	return out, err
}

// DeleteWebhook deletes webhook id.
func (c *Client) DeleteWebhook(ctx context.Context, id int64) error {
	return c.Do(ctx, http.MethodDelete, fmt.Sprintf("%s/webhooks/%d", protocol.APIVersion, id), nil, nil)
}
