package realswitch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"callbridge/postgres/pgtest"
)

// Options configure an Env; the zero value is a working default.
type Options struct {
	// Binary is the callbridge binary (BuildController); built into the
	// Env's own directory when empty.
	Binary string
	// SwitchEnv holds FS_* variables for FreeSWITCH (FS_MAX_SESSIONS...).
	SwitchEnv map[string]string
	// ControllerEnv holds CALLBRIDGE_* variables for the controller.
	ControllerEnv map[string]string
	// Carrier is how the carrier behind the "carrier" gateway answers.
	Carrier CarrierConfig
	// Carriers are further carriers, each a sipp behind a gateway of its
	// own (SwitchConfig.Gateways), on its own port.
	Carriers []CarrierOption
}

// CarrierOption is a further carrier of an Env.
type CarrierOption struct {
	// Name is its gateway's name (Gateway.Name).
	Name string
	// CarrierConfig is how it answers.
	CarrierConfig
}

// Env is one FreeSWITCH, one controller with its own database, and the
// carrier: a sipp UAS (testdata/sipp/carrier.xml) behind the "carrier"
// gateway that answers every leg FreeSWITCH dials as the called number
// says (see Number).
type Env struct {
	Switch     *Switch
	Controller *Controller
	Carrier    *Sipp
	// Carriers are every carrier by its gateway's name: Carrier as
	// "carrier", and those of Options.Carriers.
	Carriers map[string]*Sipp
	// Admin calls the API with the admin token.
	Admin *Client
	// DatabaseURL is the controller's private database.
	DatabaseURL string

	ctrl   ControllerConfig
	dir    string
	dropDB func()
}

const (
	adminToken       = "realswitch-admin-token"
	dialplanUser     = "freeswitch"
	dialplanPassword = "realswitch-dialplan"
)

// Start starts an Env: the carrier sipp, a database, FreeSWITCH with the
// repository's freeswitch-conf/ (only FS_* variables set), and a
// controller connected to it and ready. Close stops it all.
func Start(opts Options) (env *Env, err error) {
	e := &Env{}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.dir, err = os.MkdirTemp("", "realswitch-"); err != nil {
		return nil, err
	}
	bin := opts.Binary
	if bin == "" {
		if bin, err = BuildController(e.dir); err != nil {
			return nil, err
		}
	}
	if e.Carrier, err = StartCarrierWith(opts.Carrier); err != nil {
		return nil, err
	}
	e.Carriers = map[string]*Sipp{"carrier": e.Carrier}
	var gws []Gateway
	for _, c := range opts.Carriers {
		if _, dup := e.Carriers[c.Name]; dup {
			return nil, fmt.Errorf("realswitch: carrier %q twice", c.Name)
		}
		s, err := StartCarrierWith(c.CarrierConfig)
		if err != nil {
			return nil, err
		}
		e.Carriers[c.Name] = s
		gws = append(gws, Gateway{Name: c.Name, Proxy: s.Addr})
	}
	if e.DatabaseURL, e.dropDB, err = pgtest.Create(context.Background()); err != nil {
		return nil, fmt.Errorf("realswitch: %w", err)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	httpAddr := "127.0.0.1:" + strconv.Itoa(port)
	if e.Switch, err = StartSwitch(SwitchConfig{
		DialplanURL:         "http://" + httpAddr + "/fs/dialplan",
		DialplanCredentials: dialplanUser + ":" + dialplanPassword,
		CarrierProxy:        e.Carrier.Addr,
		Gateways:            gws,
		Env:                 opts.SwitchEnv,
	}); err != nil {
		return nil, err
	}
	// The prompts A hears are files on this FreeSWITCH's host, as in
	// production; ControllerEnv may name others.
	ctrlEnv, err := WritePrompts(e.Switch.State)
	if err != nil {
		return nil, err
	}
	for k, v := range opts.ControllerEnv {
		ctrlEnv[k] = v
	}
	e.ctrl = ControllerConfig{
		Binary: bin, DatabaseURL: e.DatabaseURL, HTTPAddr: httpAddr,
		ESL: []string{e.Switch.ESLAddr}, ESLPassword: e.Switch.ESLPassword,
		AdminToken: adminToken, DialplanUser: dialplanUser, DialplanPassword: dialplanPassword,
		Dir: e.dir, Env: ctrlEnv,
	}
	if err := e.StartController(); err != nil {
		return nil, err
	}
	e.Admin = &Client{URL: e.Controller.URL, Token: adminToken}
	return e, nil
}

// StartController starts the controller (again, after Controller.Kill
// or Stop) on the same address, database and spool, and waits until it
// is ready.
func (e *Env) StartController() error {
	c, err := StartController(e.ctrl)
	if err != nil {
		return err
	}
	e.Controller = c
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.WaitReady(ctx)
}

// NewAccount creates a postpaid EUR account and returns its client.
func (e *Env) NewAccount(ctx context.Context, name string) (*Client, error) {
	return e.Admin.CreateAccount(ctx, AccountRequest{Name: name, ServiceNumber: "+49 30 1234567", Currency: "EUR"})
}

// Close stops the controller, FreeSWITCH and sipp, and drops the
// database.
func (e *Env) Close() error {
	var errs []error
	if e.Controller != nil {
		select {
		case <-e.Controller.Done():
		default:
			errs = append(errs, e.Controller.Stop(10*time.Second))
		}
	}
	if e.Switch != nil {
		errs = append(errs, e.Switch.Stop())
	}
	for _, c := range e.Carriers {
		c.Stop()
	}
	if e.Carriers == nil && e.Carrier != nil {
		e.Carrier.Stop()
	}
	if e.dropDB != nil {
		e.dropDB()
	}
	if e.dir != "" && os.Getenv("REALSWITCH_KEEP") == "" {
		os.RemoveAll(e.dir)
	}
	return errors.Join(errs...)
}

// Diagnostics returns the ends of the controller's and FreeSWITCH's logs
// and sipp's errors, for a failing test's message.
func (e *Env) Diagnostics() string {
	s := ""
	if e.Controller != nil {
		s += "--- controller log\n" + e.Controller.LogTail(6000) + "\n"
	}
	if e.Switch != nil {
		s += "--- FreeSWITCH log\n" + e.Switch.LogTail(6000) + "\n"
	}
	for name, c := range e.Carriers {
		s += "--- carrier sipp " + name + "\n" + tail(c.Errors(), 2000) + "\n"
	}
	return s
}
