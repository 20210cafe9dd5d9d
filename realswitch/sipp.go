package realswitch

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// SippConfig is how one sipp process is run.
type SippConfig struct {
	// Scenario is a file name in realswitch/testdata/sipp/ or a path.
	Scenario string
	// Remote is the host:port a UAC calls; empty for a UAS.
	Remote string
	// Args are further sipp arguments (-s NUMBER, -set caller N, -d MS...).
	Args []string
}

// Sipp is a sipp process on loopback, with every SIP message it sent and
// received traced to a file (-trace_msg) that Calls parses.
type Sipp struct {
	// Addr is the host:port it listens on for SIP.
	Addr string
	// Dir is its working directory: the traces, and audio.ulaw, the tone
	// it plays as RTP on answered calls (rtp_stream).
	Dir string

	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// ScenarioPath returns the path of a scenario in realswitch/testdata/sipp.
func ScenarioPath(name string) (string, error) {
	if filepath.IsAbs(name) {
		return name, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, "realswitch", "testdata", "sipp", name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("realswitch: sipp scenario: %w", err)
	}
	return p, nil
}

// StartSipp runs sipp with cfg on a free loopback port, with its own
// random RTP ports, until Stop (a UAS) or until its calls end (a UAC:
// pass -m in Args and use Wait).
func StartSipp(cfg SippConfig) (*Sipp, error) {
	bin, err := exec.LookPath("sipp")
	if err != nil {
		return nil, errors.New("realswitch: sipp is not installed (Debian: apt-get install sip-tester; make test-freeswitch installs it)")
	}
	scenario, err := ScenarioPath(cfg.Scenario)
	if err != nil {
		return nil, err
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "realswitch-sipp-")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "audio.ulaw"), tone(440, 2*time.Second), 0o644); err != nil {
		return nil, err
	}
	media, err := sippMediaPort()
	if err != nil {
		return nil, err
	}
	args := []string{"-sf", scenario}
	if cfg.Remote != "" {
		args = append(args, cfg.Remote)
	}
	args = append(args,
		"-i", "127.0.0.1", "-p", strconv.Itoa(port), "-mi", "127.0.0.1", "-mp", strconv.Itoa(media),
		"-nostdin", "-trace_msg", "-message_file", filepath.Join(dir, "messages.log"),
		"-trace_err", "-error_file", filepath.Join(dir, "errors.log"))
	args = append(args, cfg.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := os.Create(filepath.Join(dir, "screen.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("realswitch: start sipp: %w", err)
	}
	s := &Sipp{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		out.Close()
		close(s.done)
	}()
	// sipp binds at once or exits: give a scenario error time to show.
	select {
	case <-s.done:
		if cfg.Remote == "" {
			return nil, fmt.Errorf("realswitch: sipp exited at start: %v\n%s", s.err, s.Errors())
		}
	case <-time.After(200 * time.Millisecond):
	}
	return s, nil
}

// Wait waits for sipp to exit and returns its exit error (sipp exits 0
// when every call succeeded, 1 when some failed).
func (s *Sipp) Wait(ctx context.Context) error {
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop ends sipp and removes its directory (kept when REALSWITCH_KEEP is
// set).
func (s *Sipp) Stop() {
	s.cmd.Process.Kill()
	<-s.done
	if os.Getenv("REALSWITCH_KEEP") == "" {
		os.RemoveAll(s.Dir)
	}
}

// Errors returns sipp's error log and the end of its screen output.
func (s *Sipp) Errors() string {
	e, _ := os.ReadFile(filepath.Join(s.Dir, "errors.log"))
	o, _ := os.ReadFile(filepath.Join(s.Dir, "screen.log"))
	return string(e) + tail(string(o), 2000)
}

// Message is one SIP message sipp sent or received.
type Message struct {
	// At is when sipp sent or received it.
	At time.Time
	// Sent is true for a message sipp sent.
	Sent bool
	// Method is the request's method ("INVITE"), "" for a response.
	Method string
	// Status is the response's status code, 0 for a request.
	Status int
	// User is the Request-URI's user part of a request.
	User string
	// Text is the whole message.
	Text string
}

// Header returns the first value of the header name ("" when absent).
func (m Message) Header(name string) string {
	for _, line := range strings.Split(m.Text, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break
		}
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// CSeqMethod is the method of the CSeq header ("INVITE" for a 200 to an
// INVITE).
func (m Message) CSeqMethod() string {
	f := strings.Fields(m.Header("CSeq"))
	if len(f) < 2 {
		return ""
	}
	return f[1]
}

// Call is one SIP dialog as sipp saw it, its messages in order.
type Call struct {
	// ID is the Call-ID.
	ID string
	// Number is the Request-URI user of its INVITE: the dialled number.
	Number string
	// Messages are every message of the call, in the order sipp logged them.
	Messages []Message
}

// Invite returns the call's first INVITE.
func (c Call) Invite() (Message, bool) {
	return c.first(func(m Message) bool { return m.Method == "INVITE" })
}

// Final returns the final response (>= 200) to the INVITE.
func (c Call) Final() (Message, bool) {
	return c.first(func(m Message) bool { return m.Status >= 200 && m.CSeqMethod() == "INVITE" })
}

// Bye returns the call's BYE, whichever side sent it.
func (c Call) Bye() (Message, bool) {
	return c.first(func(m Message) bool { return m.Method == "BYE" })
}

// Ended reports whether the call is over: a final non-2xx answer, or a
// BYE and its 200.
func (c Call) Ended() bool {
	f, ok := c.Final()
	if !ok {
		return false
	}
	if f.Status >= 300 {
		return true
	}
	_, ok = c.first(func(m Message) bool { return m.Status == 200 && m.CSeqMethod() == "BYE" })
	return ok
}

// Talk is the time from the 200 to the INVITE to the BYE: the talk time
// of an answered call, as sipp saw it.
func (c Call) Talk() (time.Duration, bool) {
	f, ok := c.Final()
	if !ok || f.Status != 200 {
		return 0, false
	}
	b, ok := c.Bye()
	if !ok {
		return 0, false
	}
	return b.At.Sub(f.At), true
}

// AckDelay is how long the far end took to ACK the 200 sipp sent to its
// INVITE: the window in which it took the call as answered. Timing
// compared with sipp's (Talk) is no more exact than that.
func (c Call) AckDelay() time.Duration {
	f, ok := c.Final()
	if !ok || f.Status != 200 || !f.Sent {
		return 0
	}
	ack, ok := c.first(func(m Message) bool { return m.Method == "ACK" && !m.Sent })
	if !ok {
		return 0
	}
	return ack.At.Sub(f.At)
}

func (c Call) first(pred func(Message) bool) (Message, bool) {
	for _, m := range c.Messages {
		if pred(m) {
			return m, true
		}
	}
	return Message{}, false
}

// Calls parses the message trace: every call sipp saw so far.
func (s *Sipp) Calls() ([]Call, error) {
	b, err := os.ReadFile(filepath.Join(s.Dir, "messages.log"))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	return parseTrace(string(b)), nil
}

// WaitCall waits until sipp has seen a call to number for which done
// holds (Call.Ended, for instance), and returns it.
func (s *Sipp) WaitCall(ctx context.Context, number string, done func(Call) bool) (Call, error) {
	for {
		calls, err := s.Calls()
		if err != nil {
			return Call{}, err
		}
		var last Call
		for _, c := range calls {
			if c.Number == number {
				last = c
				if done(c) {
					return c, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("realswitch: sipp at %s: no call to %s as wanted (%d messages seen): %w", s.Addr, number, len(last.Messages), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// traceHead starts each message in sipp's -trace_msg file.
var traceHead = regexp.MustCompile(`(?m)^-{20,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n(UDP|TCP) message (sent|received)[^\n]*\n`)

// parseTrace splits a -trace_msg file into calls by Call-ID.
func parseTrace(text string) []Call {
	idx := traceHead.FindAllStringSubmatchIndex(text, -1)
	var calls []Call
	byID := map[string]int{}
	for i, m := range idx {
		end := len(text)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		at, err := time.ParseInLocation("2006-01-02 15:04:05.000000", text[m[2]:m[3]], time.Local)
		if err != nil {
			continue
		}
		body := strings.TrimLeft(text[m[1]:end], "\r\n")
		body = strings.TrimRight(body, "\r\n") + "\n"
		msg := Message{At: at, Sent: text[m[6]:m[7]] == "sent", Text: body}
		first, _, _ := strings.Cut(body, "\n")
		f := strings.Fields(first)
		if len(f) >= 2 && strings.HasPrefix(f[0], "SIP/") {
			msg.Status, _ = strconv.Atoi(f[1])
		} else if len(f) >= 2 {
			msg.Method = f[0]
			uri := strings.TrimPrefix(f[1], "sip:")
			if user, _, ok := strings.Cut(uri, "@"); ok {
				msg.User = user
			}
		}
		id := msg.Header("Call-ID")
		if id == "" {
			continue
		}
		n, ok := byID[id]
		if !ok {
			n = len(calls)
			byID[id] = n
			calls = append(calls, Call{ID: id})
		}
		if msg.Method == "INVITE" && calls[n].Number == "" {
			calls[n].Number = msg.User
		}
		calls[n].Messages = append(calls[n].Messages, msg)
	}
	return calls
}

// tone returns d of a sine at hz as 8 kHz G.711 µ-law samples: the audio
// sipp plays as RTP on answered calls.
func tone(hz float64, d time.Duration) []byte {
	n := int(d.Seconds() * 8000)
	out := make([]byte, n)
	for i := range out {
		out[i] = ulaw(int(8000 * math.Sin(2*math.Pi*hz*float64(i)/8000)))
	}
	return out
}

// ulaw encodes a 16-bit linear sample as G.711 µ-law.
func ulaw(s int) byte {
	const bias, clip = 0x84, 32635
	sign := 0
	if s < 0 {
		sign, s = 0x80, -s
	}
	s = min(s, clip) + bias
	exp := 7
	for mask := 0x4000; exp > 0 && s&mask == 0; mask >>= 1 {
		exp--
	}
	mant := (s >> (exp + 3)) & 0x0f
	return ^byte(sign | exp<<4 | mant)
}

// Dial places one call with testdata/sipp/phone.xml: from caller to
// number at remote (Switch.ExternalSIP for a carrier, InternalSIP for the
// inside network), holding for hold once answered, then BYE. It returns
// the call as sipp saw it once sipp has exited; sipp's own exit status
// (1 when the call was refused or FreeSWITCH hung up first) is not an
// error.
func Dial(ctx context.Context, remote, caller, number string, hold time.Duration) (Call, error) {
	limit := hold + 60*time.Second
	s, err := StartSipp(SippConfig{Scenario: "phone.xml", Remote: remote, Args: []string{
		"-s", Digits(number), "-set", "caller", Digits(caller), "-m", "1",
		"-d", strconv.FormatInt(hold.Milliseconds(), 10),
		"-timeout", strconv.Itoa(int(limit.Seconds())) + "s", "-timeout_error",
	}})
	if err != nil {
		return Call{}, err
	}
	defer s.Stop()
	if err := s.Wait(ctx); err != nil && ctx.Err() != nil {
		return Call{}, err
	}
	calls, err := s.Calls()
	if err != nil {
		return Call{}, err
	}
	if len(calls) != 1 {
		return Call{}, fmt.Errorf("realswitch: the phone saw %d calls, want 1\n%s", len(calls), s.Errors())
	}
	return calls[0], nil
}

// StartCarrier starts the carrier: testdata/sipp/carrier.xml, answering
// the "carrier" gateway's OPTIONS pings (sipp -aa), without which
// FreeSWITCH marks the gateway down after its first ping (30 s) and
// refuses every leg with DESTINATION_OUT_OF_ORDER.
func StartCarrier() (*Sipp, error) {
	return StartCarrierWith(CarrierConfig{})
}

// CarrierConfig is how a carrier sipp answers the legs sent to it.
type CarrierConfig struct {
	// Refuse, when not zero, is the SIP status (503 or 408) the carrier
	// answers every INVITE with, whatever the number: a carrier that
	// cannot carry calls (FreeSWITCH reports NORMAL_TEMPORARY_FAILURE for
	// 503, RECOVERY_ON_TIMER_EXPIRE for 408). Zero: it answers as the
	// number says (Number, Behaviour).
	Refuse int
}

// StartCarrierWith starts a carrier (testdata/sipp/carrier.xml) on its own
// loopback port, answering OPTIONS pings, configured by cfg.
func StartCarrierWith(cfg CarrierConfig) (*Sipp, error) {
	switch cfg.Refuse {
	case 0, 408, 503:
	default:
		return nil, fmt.Errorf("realswitch: carrier refusal %d: want 503, 408 or 0", cfg.Refuse)
	}
	return StartSipp(SippConfig{Scenario: "carrier.xml", Args: []string{"-aa", "-set", "refuse", strconv.Itoa(cfg.Refuse)}})
}
