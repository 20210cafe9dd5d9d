package carrier

import (
	"context"
	"errors"
	"sync"
	"time"

	"callbridge/esl"
	"callbridge/esl/freeswitch"
	"callbridge/routing"
)

// Watch follows what every node says of its sofia gateways until ctx
// ends: it asks each connected node for all of them ("sofia xmlstatus
// gateway") when it connects and every PollInterval, and applies each
// sofia::gateway_state event at once (the nodes' clients must subscribe
// to freeswitch.GatewayStateSubclass for those; without it Watch polls only). A
// node that is not connected is forgotten (ForgetNode) until it is
// again (its client's state is looked at every second).
func (g *Gateways) Watch(ctx context.Context, nodes ...*esl.Client) error {
	var wg sync.WaitGroup
	for _, c := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.watchNode(ctx, c)
		}()
	}
	wg.Wait()
	return nil
}

func (g *Gateways) watchNode(ctx context.Context, c *esl.Client) {
	node := c.Name()
	defer g.ForgetNode(node)
	t := time.NewTicker(g.cfg.PollInterval)
	defer t.Stop()
	// A lost connection sends no event: look at the client's state every
	// second (an atomic read).
	alive := time.NewTicker(time.Second)
	defer alive.Stop()
	sub := c.Subscribe(0)
	defer func() { sub.Close() }()
	g.poll(ctx, c)
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.C():
			if !ok {
				if errors.Is(sub.Err(), esl.ErrClosed) {
					return // the client's Run returned
				}
				// An overflow: resubscribe and catch up with a poll.
				sub = c.Subscribe(0)
				g.poll(ctx, c)
				continue
			}
			if e.Name == freeswitch.SocketConnected {
				g.poll(ctx, c)
				continue
			}
			if gs, ok := freeswitch.ParseGatewayState(e); ok {
				s := routing.ParseSofiaStatus(gs.PingStatus)
				g.SetNodeGateway(node, gs.Gateway, s)
				g.log.Info("carrier: gateway state", "node", node, "gateway", gs.Gateway, "status", gs.PingStatus, "sip_status", gs.SIPStatus)
			}
		case <-t.C:
			g.poll(ctx, c)
		case <-alive.C:
			if c.State() != esl.StateConnected {
				g.ForgetNode(node)
			}
		}
	}
}

// poll replaces node c's report with its answer, or forgets the node
// when it is not connected or does not answer.
func (g *Gateways) poll(ctx context.Context, c *esl.Client) {
	if c.State() != esl.StateConnected {
		g.ForgetNode(c.Name())
		return
	}
	pctx, cancel := context.WithTimeout(ctx, g.cfg.PollInterval)
	defer cancel()
	gws, err := c.GatewayStatuses(pctx)
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("carrier: gateway status", "node", c.Name(), "error", err)
		}
		g.ForgetNode(c.Name())
		return
	}
	states := make(map[string]routing.SofiaState, len(gws))
	for _, gw := range gws {
		states[gw.Name] = routing.ParseSofiaStatus(gw.Status)
	}
	g.SetNode(c.Name(), states)
}
