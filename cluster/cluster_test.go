//go:build cluster

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge"
	"callbridge/internal/wait"
	"callbridge/postgres/pgtest"
	"callbridge/realswitch"
)

const (
	adminToken       = "cluster-admin-token"
	dialplanUser     = "freeswitch"
	dialplanPassword = "cluster-dialplan"
	eslPassword      = "cluster-esl"
)

// cluster is Kamailio in front of two FreeSWITCH nodes, and two
// controllers on one database. Node i asks controller i for its
// dialplan; both controllers drive both nodes.
type cluster struct {
	kam      *kamailio
	nodes    [2]*realswitch.Switch
	ctrls    [2]*realswitch.Controller
	admins   [2]*realswitch.Client
	carrier  *realswitch.Sipp
	dropDB   func()
	dir      string
	ctrlCfgs [2]realswitch.ControllerConfig
}

// startCluster starts the cluster; switchEnv adds FS_* settings to both
// nodes.
func startCluster(t *testing.T, switchEnv map[string]string) *cluster {
	t.Helper()
	c := &cluster{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(c.diagnostics())
		}
		c.close()
	})
	var err error
	if c.dir, err = os.MkdirTemp("", "cluster-"); err != nil {
		t.Fatal(err)
	}
	bin, err := realswitch.BuildController(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	if c.carrier, err = realswitch.StartCarrier(); err != nil {
		t.Fatal(err)
	}
	dbURL, drop, err := pgtest.Create(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	c.dropDB = drop
	var httpAddrs [2]string
	for i := range httpAddrs {
		port, err := realswitch.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		httpAddrs[i] = "127.0.0.1:" + strconv.Itoa(port)
	}
	for i := range c.nodes {
		if c.nodes[i], err = realswitch.StartSwitch(realswitch.SwitchConfig{
			DialplanURL:         "http://" + httpAddrs[i] + "/fs/dialplan",
			DialplanCredentials: dialplanUser + ":" + dialplanPassword,
			CarrierProxy:        c.carrier.Addr,
			ESLPassword:         eslPassword,
			Env:                 switchEnv,
		}); err != nil {
			t.Fatal(err)
		}
	}
	esl := []string{c.nodes[0].ESLAddr, c.nodes[1].ESLAddr}
	for i := range c.ctrls {
		c.ctrlCfgs[i] = realswitch.ControllerConfig{
			Binary: bin, DatabaseURL: dbURL, HTTPAddr: httpAddrs[i],
			ESL: esl, ESLPassword: eslPassword,
			AdminToken: adminToken, DialplanUser: dialplanUser, DialplanPassword: dialplanPassword,
			Dir: c.dir + "/ctrl" + strconv.Itoa(i),
			// Probe nodes every second, as Kamailio does, so a drain is
			// seen within the test's patience.
			Env: map[string]string{"CALLBRIDGE_ESL_PROBE_INTERVAL": "1s"},
		}
		if err := os.MkdirAll(c.ctrlCfgs[i].Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if c.ctrls[i], err = realswitch.StartController(c.ctrlCfgs[i]); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		err = c.ctrls[i].WaitReady(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		c.admins[i] = &realswitch.Client{URL: c.ctrls[i].URL, Token: adminToken}
	}
	if c.kam, err = startKamailio([]string{c.nodes[0].ExternalSIP, c.nodes[1].ExternalSIP}); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *cluster) close() {
	if c.kam != nil {
		c.kam.Stop()
	}
	for _, ctrl := range c.ctrls {
		if ctrl != nil {
			select {
			case <-ctrl.Done():
			default:
				ctrl.Stop(10 * time.Second)
			}
		}
	}
	for _, n := range c.nodes {
		if n != nil {
			n.Stop()
		}
	}
	if c.carrier != nil {
		c.carrier.Stop()
	}
	if c.dropDB != nil {
		c.dropDB()
	}
	if c.dir != "" && os.Getenv("REALSWITCH_KEEP") == "" {
		os.RemoveAll(c.dir)
	}
}

func (c *cluster) diagnostics() string {
	var b strings.Builder
	for i, ctrl := range c.ctrls {
		if ctrl != nil {
			fmt.Fprintf(&b, "--- controller %d log\n%s\n", i+1, ctrl.LogTail(4000))
		}
	}
	for i, n := range c.nodes {
		if n != nil {
			fmt.Fprintf(&b, "--- FreeSWITCH %d log\n%s\n", i+1, n.LogTail(4000))
		}
	}
	if c.kam != nil {
		fmt.Fprintf(&b, "--- kamailio log\n%s\n", c.kam.LogTail(4000))
	}
	return b.String()
}

// account creates an account through controller 1 and a pool of one
// virtual number x, and binds A and B through x (AXB), all on controller 1.
func (c *cluster) bind(ctx context.Context, t *testing.T, name, x, a, b string) (*realswitch.Client, *callbridge.Binding) {
	t.Helper()
	acct, err := c.admins[0].CreateAccount(ctx, realswitch.AccountRequest{Name: name, ServiceNumber: "+49 30 1234567", Currency: "EUR"})
	if err != nil {
		t.Fatal(err)
	}
	pool := map[string]any{"numbers": []map[string]any{{"number": x, "gateway": "carrier"}}}
	if err := acct.Do(ctx, "POST", "/v1/numbers", pool, http.StatusCreated, nil); err != nil {
		t.Fatal(err)
	}
	var bd callbridge.Binding
	req := map[string]any{"mode": "AXB", "x": x, "a": a, "b": b, "ttl": 3600}
	if err := acct.Do(ctx, "POST", "/v1/bindings", req, http.StatusCreated, &bd); err != nil {
		t.Fatal(err)
	}
	return acct, &bd
}

// dialAll places calls from a to x through Kamailio, one every gap, each
// holding hold once answered, and returns what each phone saw, in order.
// before, when set, runs before call i is placed.
func (c *cluster) dialAll(ctx context.Context, a, x string, n int, gap, hold time.Duration, before func(i int)) ([]realswitch.Call, error) {
	calls := make([]realswitch.Call, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		if before != nil {
			before(i)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			calls[i], errs[i] = realswitch.Dial(ctx, c.kam.Addr, a, x, hold)
		}()
		time.Sleep(gap)
	}
	wg.Wait()
	return calls, errors.Join(errs...)
}

func answered(c realswitch.Call) bool {
	f, ok := c.Final()
	return ok && f.Status == 200
}

// nodeOf maps a CDR's node (its event socket address) to 0 or 1.
func (c *cluster) nodeOf(cdr *callbridge.CDR) int {
	for i, n := range c.nodes {
		if n != nil && cdr.Node == n.ESLAddr {
			return i
		}
	}
	return -1
}

// waitCDRs waits until the binding (or account, with binding "") has want
// CDRs, as controller ctrl reports them, and returns them.
func (c *cluster) waitCDRs(ctx context.Context, t *testing.T, ctrl int, acct, binding string, want int) []*callbridge.CDR {
	t.Helper()
	q := url.Values{}
	if binding != "" {
		q.Set("binding_id", binding)
	}
	var cdrs []*callbridge.CDR
	wait.ForState(t, fmt.Sprintf("%d CDRs", want), func() (bool, string) {
		var err error
		cdrs, err = c.admins[ctrl].AccountCDRs(ctx, acct, q)
		return err == nil && len(cdrs) >= want, fmt.Sprintf("%d CDRs (%v)", len(cdrs), err)
	}, wait.Every(200*time.Millisecond))
	return cdrs
}

// TestClusterSpreadAndBindingsEverywhere: a binding made on controller 1
// routes at once on both nodes, including node 2, whose dialplan comes
// from controller 2; Kamailio spreads the calls over both nodes; every
// call connects and every leg has exactly one CDR. Then node 2 is drained
// in Kamailio: new calls all go to node 1 while node 2's call finishes.
func TestClusterSpreadAndBindingsEverywhere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startCluster(t, nil)
	a, x, b := "+4915110000001", "+4930555000100", realswitch.Number(9101, realswitch.Answer)
	acct, bd := c.bind(ctx, t, "spread", x, a, b)

	calls, err := c.dialAll(ctx, a, x, 6, 150*time.Millisecond, 2*time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, call := range calls {
		if !answered(call) {
			f, _ := call.Final()
			t.Errorf("call %d: final %d, want 200", i, f.Status)
		}
	}
	cdrs := c.waitCDRs(ctx, t, 1, acct.AccountID, bd.ID, 2*len(calls))
	perNode := [2]int{}
	seen := map[string]bool{}
	for _, cdr := range cdrs {
		if seen[cdr.UUID] {
			t.Errorf("CDR %s twice", cdr.UUID)
		}
		seen[cdr.UUID] = true
		if n := c.nodeOf(cdr); n >= 0 && cdr.Direction == "inbound" {
			perNode[n]++
		}
	}
	if len(cdrs) != 2*len(calls) {
		t.Errorf("%d CDRs for %d calls, want two legs each", len(cdrs), len(calls))
	}
	if perNode[0] == 0 || perNode[1] == 0 {
		t.Errorf("inbound legs per node %v: Kamailio did not spread the calls", perNode)
	}
	t.Logf("inbound legs per node: %v", perNode)

	// Drain node 2 while two calls (one on each node, round robin) are in
	// progress: both finish as their callers meant, and every call placed
	// after the drain goes to node 1.
	node2 := c.nodes[1].ExternalSIP
	type result struct {
		calls []realswitch.Call
		err   error
	}
	pairC := make(chan result, 1)
	go func() {
		calls, err := c.dialAll(ctx, a, x, 2, 100*time.Millisecond, 4*time.Second, nil)
		pairC <- result{calls, err}
	}()
	time.Sleep(1500 * time.Millisecond)
	if err := c.kam.Drain(ctx, node2); err != nil {
		t.Fatal(err)
	}
	drainedAt := time.Now()
	drained, err := c.dialAll(ctx, a, x, 4, 100*time.Millisecond, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	pair := <-pairC
	if pair.err != nil {
		t.Fatal(pair.err)
	}
	for i, call := range pair.calls {
		if d, ok := call.Talk(); !answered(call) || !ok || d < 3900*time.Millisecond {
			t.Errorf("call %d in progress during the drain: talked %v (%v), want its full 4 s", i, d, ok)
		}
	}
	for i, call := range drained {
		if !answered(call) {
			t.Errorf("call %d after the drain was not answered", i)
		}
	}
	total := len(calls) + len(pair.calls) + len(drained)
	cdrs = c.waitCDRs(ctx, t, 0, acct.AccountID, bd.ID, 2*total)
	onNode2 := 0
	for _, cdr := range cdrs {
		if cdr.Direction == "inbound" && cdr.StartAt.After(drainedAt) && c.nodeOf(cdr) == 1 {
			onNode2++
		}
	}
	if onNode2 != 0 {
		t.Errorf("node 2 took %d new calls while drained", onNode2)
	}
	if err := c.kam.Undrain(ctx, node2); err != nil {
		t.Fatal(err)
	}
	if err := c.kam.waitState(ctx, node2, "AP"); err != nil {
		t.Error(err)
	}

	// Drain node 2 the FreeSWITCH way, one command on the node: fsctl
	// pause. Kamailio's probes get 503 and take it out; the controllers'
	// probes see ready_check false and place no callback there.
	if _, err := c.nodes[1].API(ctx, "fsctl pause"); err != nil {
		t.Fatal(err)
	}
	pausedAt := time.Now()
	if err := c.kam.waitState(ctx, node2, "IP"); err != nil {
		t.Error(err)
	}
	for i := range c.ctrls {
		c.waitNodeReady(ctx, t, i, c.nodes[1].ESLAddr, false)
	}
	more, err := c.dialAll(ctx, a, x, 2, 100*time.Millisecond, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, call := range more {
		if !answered(call) {
			t.Errorf("call %d while node 2 was paused was not answered", i)
		}
	}
	for i := range 2 {
		cb, err := acct.CreateCallback(ctx, realswitch.CallbackRequest{
			A: realswitch.Number(9110+i, realswitch.Answer), B: realswitch.Number(9120+i, realswitch.Hold(1))})
		if err != nil {
			t.Fatal(err)
		}
		if cb, err = acct.WaitCallback(ctx, cb.ID, realswitch.Ended); err != nil {
			t.Fatal(err)
		}
		if cb.Status != callbridge.CallbackCompleted || cb.Node != c.nodes[0].ESLAddr {
			t.Errorf("callback while node 2 was paused: %s %s on %s, want completed on node 1", cb.Status, cb.Reason, cb.Node)
		}
	}
	total += len(more)
	cdrs = c.waitCDRs(ctx, t, 1, acct.AccountID, bd.ID, 2*total)
	for _, cdr := range cdrs {
		if cdr.StartAt.After(pausedAt) && c.nodeOf(cdr) == 1 {
			t.Errorf("node 2 took leg %s while paused", cdr.UUID)
		}
	}
	if _, err := c.nodes[1].API(ctx, "fsctl resume"); err != nil {
		t.Fatal(err)
	}
	if err := c.kam.waitState(ctx, node2, "AP"); err != nil {
		t.Error(err)
	}
	for i := range c.ctrls {
		c.waitNodeReady(ctx, t, i, c.nodes[1].ESLAddr, true)
	}
}

// waitNodeReady waits until controller ctrl's /readyz reports the node
// with event socket addr as ready (or not).
func (c *cluster) waitNodeReady(ctx context.Context, t *testing.T, ctrl int, addr string, ready bool) {
	t.Helper()
	wait.ForState(t, fmt.Sprintf("controller %d to report node %s ready=%v", ctrl+1, addr, ready), func() (bool, string) {
		var st struct {
			Nodes []struct {
				Addr     string `json:"addr"`
				Ready    bool   `json:"ready"`
				NotReady string `json:"not_ready"`
			} `json:"nodes"`
		}
		// /readyz answers 503 when no node is ready; either way it lists them.
		if err := c.admins[ctrl].Do(ctx, "GET", "/readyz", nil, http.StatusOK, &st); err != nil {
			return false, err.Error()
		}
		for _, n := range st.Nodes {
			if n.Addr == addr {
				return n.Ready == ready, fmt.Sprintf("ready=%v (%s)", n.Ready, n.NotReady)
			}
		}
		return false, "node not listed"
	}, wait.Every(200*time.Millisecond))
}

// TestClusterNodeKilled: node 1 is killed (SIGKILL) while calls and
// callbacks run. Every call placed from one probe interval after the kill
// connects through node 2, callbacks created after it complete there, and
// once node 1 is back every leg that was answered has exactly one CDR:
// exact on node 2, estimated for the calls node 1 lost with it.
func TestClusterNodeKilled(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := startCluster(t, nil)
	a, x, b := "+4915110000002", "+4930555000200", realswitch.Number(9201, realswitch.Answer)
	acct, _ := c.bind(ctx, t, "kill", x, a, b)

	const n, killAt = 12, 4
	var killed time.Time
	starts := make([]time.Time, n)
	calls, err := c.dialAll(ctx, a, x, n, 400*time.Millisecond, 3*time.Second, func(i int) {
		if i == killAt {
			c.nodes[0].Kill()
			killed = time.Now()
		}
		starts[i] = time.Now()
	})
	if err != nil {
		t.Fatal(err)
	}
	// One probe interval (1 s) and one INVITE failover (1 s) after the
	// kill, no call may be lost.
	answeredCalls := 0
	for i, call := range calls {
		if answered(call) {
			answeredCalls++
			continue
		}
		if starts[i].After(killed.Add(2 * time.Second)) {
			f, _ := call.Final()
			t.Errorf("call %d, placed %v after node 1 was killed, ended %d: lost", i, starts[i].Sub(killed).Round(time.Millisecond), f.Status)
		}
	}
	st, err := c.kam.States(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if f := st[c.nodes[0].ExternalSIP]; !strings.HasPrefix(f, "I") {
		t.Errorf("kamailio still has node 1 as %q after it was killed", f)
	}

	// Callbacks placed now must complete, on node 2.
	cbs := make([]string, 3)
	for i := range cbs {
		cb, err := acct.CreateCallback(ctx, realswitch.CallbackRequest{
			A: realswitch.Number(9210+i, realswitch.Answer), B: realswitch.Number(9220+i, realswitch.Hold(2))})
		if err != nil {
			t.Fatal(err)
		}
		cbs[i] = cb.ID
	}
	for _, id := range cbs {
		cb, err := acct.WaitCallback(ctx, id, realswitch.Ended)
		if err != nil {
			t.Fatal(err)
		}
		if cb.Status != callbridge.CallbackCompleted {
			t.Errorf("callback %s after the kill: %s %s, want completed", id, cb.Status, cb.Reason)
		}
		if cb.Node != c.nodes[1].ESLAddr {
			t.Errorf("callback %s ran on %s, want node 2 (%s)", id, cb.Node, c.nodes[1].ESLAddr)
		}
	}

	// Node 1 comes back where it was; the controllers reconnect and close
	// the legs it lost.
	restarted, err := realswitch.StartSwitch(c.nodes[0].Config())
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[0].Stop()
	c.nodes[0] = restarted
	// Which node answered each call: the 200's Contact is the node's own
	// SIP address (Kamailio only record-routes).
	answeredOn := [2]int{}
	for i, call := range calls {
		if !answered(call) {
			continue
		}
		f, _ := call.Final()
		n := -1
		for j, node := range c.nodes {
			if strings.Contains(f.Header("Contact"), node.ExternalSIP) {
				n = j
			}
		}
		if n < 0 {
			t.Fatalf("call %d: 200 from no node (Contact %q)", i, f.Header("Contact"))
		}
		answeredOn[n]++
	}
	// Node 2 carried its calls and the callbacks: exactly two exact CDRs
	// each. Node 1 carried its answered calls to the end or lost them: two
	// CDRs each (estimated when lost), and at most one leg more for each
	// call that reached it unanswered.
	wantNode2 := 2*answeredOn[1] + 2*len(cbs)
	cdrs := c.waitCDRs(ctx, t, 1, acct.AccountID, "", wantNode2+2*answeredOn[0])
	seen := map[string]bool{}
	var perNode, estimated [2]int
	for _, cdr := range cdrs {
		if seen[cdr.UUID] {
			t.Errorf("CDR %s twice", cdr.UUID)
		}
		seen[cdr.UUID] = true
		n := c.nodeOf(cdr)
		if n < 0 {
			t.Fatalf("CDR %s from unknown node %s", cdr.UUID, cdr.Node)
		}
		perNode[n]++
		if cdr.Flags&callbridge.CDREstimated != 0 {
			estimated[n]++
		}
	}
	if perNode[1] != wantNode2 || estimated[1] != 0 {
		t.Errorf("node 2: %d CDRs (%d estimated), want %d exact: two legs for each of its %d calls and %d callbacks",
			perNode[1], estimated[1], wantNode2, answeredOn[1], len(cbs))
	}
	if unanswered := n - answeredCalls; perNode[0] < 2*answeredOn[0] || perNode[0] > 2*answeredOn[0]+unanswered {
		t.Errorf("node 1: %d CDRs, want %d (two legs for each of its %d answered calls) plus at most %d for calls it never answered",
			perNode[0], 2*answeredOn[0], answeredOn[0], unanswered)
	}
	t.Logf("%d calls, %d answered (%d by node 1, %d by node 2), node 1 killed before call %d; CDRs per node %v, estimated %v",
		n, answeredCalls, answeredOn[0], answeredOn[1], killAt, perNode, estimated)
}
