package esl

import (
	"context"
	"fmt"

	"callbridge/esl/freeswitch"
)

// GatewayStatuses returns every sofia gateway of the node
// (freeswitch.SofiaXMLStatusGateways). Errors are those of API, and a
// parse error for a reply that is not a gateway list.
func (c *Client) GatewayStatuses(ctx context.Context) ([]freeswitch.GatewayStatus, error) {
	out, err := c.API(ctx, freeswitch.SofiaXMLStatusGateways())
	if err != nil {
		return nil, err
	}
	return freeswitch.ParseGatewayStatus(out)
}

// GatewayStatus returns one sofia gateway (freeswitch.SofiaXMLStatusGateway):
// freeswitch.ErrUnknownGateway when the node has none by that name, a
// *freeswitch.ValidationError for a name that is not one. Other errors are
// those of GatewayStatuses.
func (c *Client) GatewayStatus(ctx context.Context, name string) (freeswitch.GatewayStatus, error) {
	cmd, err := freeswitch.SofiaXMLStatusGateway(name)
	if err != nil {
		return freeswitch.GatewayStatus{}, err
	}
	out, err := c.API(ctx, cmd)
	if err != nil {
		return freeswitch.GatewayStatus{}, err
	}
	gws, err := freeswitch.ParseGatewayStatus(out)
	if err != nil {
		return freeswitch.GatewayStatus{}, err
	}
	if len(gws) != 1 || gws[0].Name != name {
		return freeswitch.GatewayStatus{}, fmt.Errorf("esl: sofia gateway %s: the reply is about %d other gateways", name, len(gws))
	}
	return gws[0], nil
}
