package esltest

import (
	"bufio"
	"strings"
	"testing"
)

// The cases follow read_packet and strip_cr of mod_event_socket 1.10.12
// line by line; the mixed-ending one is what a real switch did with
// go-eventsocket's framing (../shared/notes/go-eventsocket.md).
func TestReadPacket(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		line    string
		headers []header
		body    string
	}{
		{"lf only", "bgapi status\nJob-UUID: j1\n\n", "bgapi status", []header{{"Job-UUID", "j1"}}, ""},
		{"crlf only", "bgapi status\r\nJob-UUID: j1\r\n\r\n", "bgapi status", []header{{"Job-UUID", "j1"}}, ""},
		{"lf then crlf: one line", "bgapi uuid_bridge a b\nJob-UUID: j1\r\n\r\n", "bgapi uuid_bridge a b\nJob-UUID: j1", nil, ""},
		{"crlf then lf", "api x\r\nA: 1\n\n", "api x", []header{{"A", "1"}}, ""},
		{"first header lost to a later cr", "api x\nA: 1\r\nB: 2\n\n", "api x\nA: 1", []header{{"B", "2"}}, ""},
		{"leading blank lines skipped", "\r\n\n\nauth ClueCon\n\n", "auth ClueCon", nil, ""},
		{"lf cr lf ends a block, the cr cuts the line", "api status\n\r\n", "api status\n", nil, ""},
		{"value spaces trimmed on the left only", "sendmsg u\ncall-command:   execute \n\n", "sendmsg u", []header{{"call-command", "execute "}}, ""},
		{"line without colon ignored", "sendmsg u\nbogus\nx: y\n\n", "sendmsg u", []header{{"x", "y"}}, ""},
		{"content-length body", "sendmsg u\ncall-command: execute\ncontent-length: 5\n\nhello", "sendmsg u", []header{{"call-command", "execute"}, {"content-length", "5"}}, "hello"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := readPacket(bufio.NewReader(strings.NewReader(tt.in)))
			if err != nil {
				t.Fatal(err)
			}
			if got := p.line(); got != tt.line {
				t.Errorf("line = %q, want %q", got, tt.line)
			}
			if len(p.headers) != len(tt.headers) {
				t.Fatalf("headers = %q, want %q", p.headers, tt.headers)
			}
			for i := range p.headers {
				if p.headers[i] != tt.headers[i] {
					t.Errorf("header %d = %q, want %q", i, p.headers[i], tt.headers[i])
				}
			}
			if string(p.body) != tt.body {
				t.Errorf("body = %q, want %q", p.body, tt.body)
			}
		})
	}
}

// Two blocks back to back are read one at a time, and the second's
// leading line breaks are skipped.
func TestReadPacketStream(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("auth ClueCon\n\n\r\nevent plain ALL\n\n"))
	for _, want := range []string{"auth ClueCon", "event plain ALL"} {
		p, err := readPacket(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := p.line(); got != want {
			t.Errorf("line = %q, want %q", got, want)
		}
	}
}
