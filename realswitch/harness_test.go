package realswitch

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// trace is the start of a -trace_msg file as sipp 3.6.1 writes it: a busy
// callee, then an answered call that FreeSWITCH hangs up.
const trace = `----------------------------------------------- 2026-12-06 05:29:54.655763
UDP message received [514] bytes :

INVITE sip:4930486@127.0.0.1:35060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:35070;branch=z9hG4bK-1
From: "4930111" <sip:4930111@127.0.0.1>;tag=abc
To: <sip:4930486@127.0.0.1:35060>
Call-ID: busy-1
CSeq: 1 INVITE
Content-Length: 0


----------------------------------------------- 2026-12-06 05:29:54.666179
UDP message sent (269 bytes):

SIP/2.0 486 Busy Here
Call-ID: busy-1
CSeq: 1 INVITE
Content-Length: 0


----------------------------------------------- 2026-12-06 05:30:15.229444
UDP message received [514] bytes :

INVITE sip:4930200@127.0.0.1:35060 SIP/2.0
Call-ID: talk-1
P-Asserted-Identity: <sip:4930999@127.0.0.1>
CSeq: 1 INVITE
Content-Length: 0


----------------------------------------------- 2026-12-06 05:30:15.542851
UDP message sent (554 bytes):

SIP/2.0 200 OK
Call-ID: talk-1
CSeq: 1 INVITE

v=0
----------------------------------------------- 2026-12-06 05:30:15.552851
UDP message received [300] bytes :

ACK sip:4930200@127.0.0.1:35060 SIP/2.0
Call-ID: talk-1
CSeq: 1 ACK


----------------------------------------------- 2026-12-06 05:30:17.547099
UDP message received [364] bytes :

BYE sip:4930200@127.0.0.1:35060 SIP/2.0
Call-ID: talk-1
CSeq: 2 BYE


----------------------------------------------- 2026-12-06 05:30:17.547939
UDP message sent (305 bytes):

SIP/2.0 200 OK
Call-ID: talk-1
CSeq: 2 BYE

`

func TestParseTrace(t *testing.T) {
	calls := parseTrace(trace)
	if len(calls) != 2 {
		t.Fatalf("got %d calls, want 2", len(calls))
	}
	busy, talk := calls[0], calls[1]
	if busy.Number != "4930486" || talk.Number != "4930200" {
		t.Errorf("numbers %q %q, want 4930486 4930200", busy.Number, talk.Number)
	}
	if f, ok := busy.Final(); !ok || f.Status != 486 || !f.Sent {
		t.Errorf("busy final = %+v %v, want 486 sent", f, ok)
	}
	if !busy.Ended() || !talk.Ended() {
		t.Errorf("ended %v %v, want both", busy.Ended(), talk.Ended())
	}
	inv, _ := busy.Invite()
	if got := inv.Header("from"); got != `"4930111" <sip:4930111@127.0.0.1>;tag=abc` {
		t.Errorf("From = %q", got)
	}
	inv, _ = talk.Invite()
	if got := inv.Header("P-Asserted-Identity"); got != "<sip:4930999@127.0.0.1>" {
		t.Errorf("P-Asserted-Identity = %q", got)
	}
	if d, ok := talk.Talk(); !ok || d != 2004248*time.Microsecond {
		t.Errorf("talk = %v %v, want 2.004248s", d, ok)
	}
	if d := talk.AckDelay(); d != 10*time.Millisecond {
		t.Errorf("ACK delay = %v, want 10ms", d)
	}
	if _, ok := busy.Talk(); ok {
		t.Error("a refused call has a talk time")
	}
}

func TestNumber(t *testing.T) {
	tests := []struct {
		n    int
		b    Behaviour
		want string
	}{
		{1, Busy, "+49300001486"},
		{12, Hold(7), "+49300012207"},
		{9999, Answer, "+49309999200"},
	}
	for _, tt := range tests {
		if got := Number(tt.n, tt.b); got != tt.want {
			t.Errorf("Number(%d, %s) = %s, want %s", tt.n, tt.b, got, tt.want)
		}
	}
	// The carrier's dispatch must know every behaviour.
	scenario, err := os.ReadFile("testdata/sipp/carrier.xml")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []Behaviour{Busy, Decline, NotFound, NoAnswer, Answer} {
		if !strings.Contains(string(scenario), `INVITE sip:[^@ ]*`+string(b)+`@`) {
			t.Errorf("carrier.xml does not dispatch on %s", b)
		}
	}
}

func TestUlaw(t *testing.T) {
	tests := []struct {
		in   int
		want byte
	}{{0, 0xff}, {-1, 0x7f}, {32767, 0x80}, {-32768, 0x00}, {1000, 0xce}}
	for _, tt := range tests {
		if got := ulaw(tt.in); got != tt.want {
			t.Errorf("ulaw(%d) = %#x, want %#x", tt.in, got, tt.want)
		}
	}
}

// TestWiring checks `make test-freeswitch` runs this suite, CI runs it,
// and docs/testing.md says so: the suite never runs under `go test ./...`.
func TestWiring(t *testing.T) {
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join("..", p))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	checks := []struct{ file, pattern string }{
		{"Makefile", `(?m)^test-freeswitch:\n\tscripts/with-postgres\.sh scripts/test-freeswitch\.sh$`},
		{"scripts/test-freeswitch.sh", `(?m)^suite="\$\{REALSWITCH_SUITE:-realswitch\}"$`},
		{"scripts/test-freeswitch.sh", `go test -tags "\$suite" -count=1 -timeout 15m -parallel \d+ "\./\$suite/"`},
		{".ci/run", `(?m)^make test\nmake test-freeswitch$`},
		{"docs/testing.md", "`make test-freeswitch`"},
	}
	for _, c := range checks {
		if !regexp.MustCompile(c.pattern).MatchString(read(c.file)) {
			t.Errorf("%s does not match %s", c.file, c.pattern)
		}
	}
	tests, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tests {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if f != "harness_test.go" && !strings.HasPrefix(string(b), "//go:build realswitch\n") {
			t.Errorf("%s lacks //go:build realswitch: go test ./... would run it without a switch", f)
		}
	}
}

// TestWritePrompts checks the prompt files are the WAV FreeSWITCH plays
// without resampling: RIFF sizes right, PCM, mono, 8 kHz, 16 bits, and
// PromptLength of a loud tone.
func TestWritePrompts(t *testing.T) {
	dir := t.TempDir()
	env, err := WritePrompts(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) != len(promptTones()) {
		t.Fatalf("settings %v, want one per prompt", env)
	}
	for name, path := range env {
		if filepath.Dir(path) != filepath.Join(dir, "sounds") {
			t.Errorf("%s = %s, want a file in %s/sounds", name, path, dir)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		le := binary.LittleEndian
		if string(b[0:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" ||
			int(le.Uint32(b[4:])) != len(b)-8 || int(le.Uint32(b[40:])) != len(b)-44 {
			t.Fatalf("%s: not a well-formed WAV header: % x", name, b[:44])
		}
		format, channels, rate, bits := le.Uint16(b[20:]), le.Uint16(b[22:]), le.Uint32(b[24:]), le.Uint16(b[34:])
		if format != 1 || channels != 1 || rate != 8000 || bits != 16 {
			t.Errorf("%s: format %d, %d channels, %d Hz, %d bits; want PCM mono 8000 Hz 16 bits", name, format, channels, rate, bits)
		}
		samples := (len(b) - 44) / 2
		if samples != int(PromptLength.Seconds()*8000) {
			t.Errorf("%s: %d samples, want %v", name, samples, PromptLength)
		}
		peak := 0
		for i := 0; i < samples; i++ {
			peak = max(peak, int(int16(le.Uint16(b[44+2*i:]))))
		}
		if peak < 7000 {
			t.Errorf("%s: peak %d, want a loud tone", name, peak)
		}
	}
}

// TestGatewayFile: the harness adds a gateway exactly as
// freeswitch-conf/README.md's command does, which docker/gateways/
// backup.xml is the output of.
func TestGatewayFile(t *testing.T) {
	template, err := os.ReadFile("../freeswitch-conf/sip_profiles/external/carrier.xml")
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../docker/gateways/backup.xml")
	if err != nil {
		t.Fatal(err)
	}
	if got := GatewayFile(template, "backup"); string(got) != string(want) {
		t.Errorf("GatewayFile(carrier.xml, backup) is not docker/gateways/backup.xml:\n%s", got)
	}
	dir := t.TempDir()
	if err := gatewayConf("../freeswitch-conf", dir, []Gateway{{Name: "second", Proxy: "127.0.0.1:5"}}); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "sip_profiles", "external", "second.xml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data="gateway_name=second"`, `data="gateway_proxy=$FS_SECOND_PROXY"`} {
		if !strings.Contains(string(got), want) {
			t.Errorf("second.xml lacks %s", want)
		}
	}
	for _, bad := range []string{"carrier", "Carrier", "x-y", ""} {
		if err := gatewayConf("../freeswitch-conf", t.TempDir(), []Gateway{{Name: bad}}); err == nil {
			t.Errorf("gateway name %q accepted", bad)
		}
	}
}
