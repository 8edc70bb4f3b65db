package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/dropless/dropless/pkg/protocol"
)

// CreateRollout creates a rollout.
func (c *Client) CreateRollout(ctx context.Context, req protocol.RolloutRequest) (protocol.Rollout, error) {
	var out protocol.Rollout
	err := c.Do(ctx, http.MethodPost, protocol.APIVersion+"/rollouts", req, &out)
	return out, err
}

// Rollouts lists the rollouts, newest first.
func (c *Client) Rollouts(ctx context.Context) ([]protocol.Rollout, error) {
	var out []protocol.Rollout
	err := c.Do(ctx, http.MethodGet, protocol.APIVersion+"/rollouts", nil, &out)
	return out, err
}

// Rollout shows rollout id with its waves and sites.
func (c *Client) Rollout(ctx context.Context, id int64) (protocol.Rollout, error) {
	var out protocol.Rollout
	err := c.Do(ctx, http.MethodGet, fmt.Sprintf("%s/rollouts/%d", protocol.APIVersion, id), nil, &out)
	return out, err
}

// RolloutAction pauses, resumes or cancels rollout id (action is
// "pause", "resume" or "cancel").
func (c *Client) RolloutAction(ctx context.Context, id int64, action string) (protocol.Rollout, error) {
	var out protocol.Rollout
	err := c.Do(ctx, http.MethodPost, fmt.Sprintf("%s/rollouts/%d/%s", protocol.APIVersion, id, action), nil, &out)
	return out, err
}
