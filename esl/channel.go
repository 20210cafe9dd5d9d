package esl

import (
	"context"

	"callbridge/esl/freeswitch"
)

// Channels lists the node's channels ("show channels as json"), for
// reconciling the calls a controller believes are live with those the node
// has. Errors are those of API, and a parse error if the result is not the
// JSON FreeSWITCH produces.
func (c *Client) Channels(ctx context.Context) ([]freeswitch.Channel, error) {
	out, err := c.API(ctx, freeswitch.ShowChannels())
	if err != nil {
		return nil, err
	}
	return freeswitch.ParseChannels(out)
}
