package freeswitch

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Command is a validated FreeSWITCH API command line, such as
// "uuid_kill <uuid> NORMAL_CLEARING". It can only be made by the builders in
// this package, each of which refuses values that could change the
// command's meaning; the zero Command is refused by the esl client.
type Command struct {
	line string
}

// String returns the command line as it will be sent after "bgapi ".
func (c Command) String() string { return c.line }

// IsZero reports whether c was not made by a builder.
func (c Command) IsZero() bool { return c.line == "" }

// ValidationError says which value a builder refused and why. The refused
// value itself is not repeated, so it cannot reach logs unescaped.
type ValidationError struct {
	Field  string
	Reason string
}

// Error implements the error interface.
func (e *ValidationError) Error() string {
	return "esl: invalid " + e.Field + ": " + e.Reason
}

func invalid(field, format string, args ...any) error {
	return &ValidationError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Limits on the lengths of values placed in commands.
const (
	maxNameLen  = 64
	maxValueLen = 256
	maxPathLen  = 512
)

// checkUUID accepts only canonical lowercase UUIDs
// ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx").
func checkUUID(field, s string) error {
	if len(s) != 36 {
		return invalid(field, "must be a canonical uuid")
	}
	u, err := uuid.Parse(s)
	if err != nil || u.String() != s {
		return invalid(field, "must be a canonical lowercase uuid")
	}
	return nil
}

// checkVarName accepts [a-z0-9_]+.
func checkVarName(field, s string) error {
	if s == "" || len(s) > maxNameLen {
		return invalid(field, "must have 1 to %d characters", maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return invalid(field, "may contain only a-z, 0-9 and '_'")
		}
	}
	return nil
}

// checkValue accepts channel-variable values: ASCII letters, digits and
// "_.@+-", up to 256 characters, possibly empty. Everything that has a
// meaning in a dial string or a command (space, ',', '{', '}', '[', ']',
// '|', '^', '&', '\”, '"', '\\', '$', ':', ';', '=', '%', '/', CR, LF,
// NUL, non-ASCII) is refused: ':' because ":_:" separates originate
// targets, '$' because FreeSWITCH expands "${...}".
func checkValue(field, s string) error {
	if len(s) > maxValueLen {
		return invalid(field, "must have at most %d characters", maxValueLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '.' || c == '@' || c == '+' || c == '-') {
			return invalid(field, "may contain only A-Z, a-z, 0-9 and '_.@+-'")
		}
	}
	return nil
}

// checkName accepts gateway, profile and dialplan-context names:
// [A-Za-z0-9_.-]+ not starting with '.' or '-'.
func checkName(field, s string) error {
	if s == "" || len(s) > maxNameLen {
		return invalid(field, "must have 1 to %d characters", maxNameLen)
	}
	if s[0] == '.' || s[0] == '-' {
		return invalid(field, "must start with a letter, digit or '_'")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '.' || c == '-') {
			return invalid(field, "may contain only A-Z, a-z, 0-9 and '_.-'")
		}
	}
	return nil
}

// checkHost accepts a DNS name or IPv4 address with an optional ":port".
// IPv6 literals are refused: their brackets mean something else in a dial
// string.
func checkHost(field, s string) error {
	host, port, hasPort := strings.Cut(s, ":")
	if err := checkName(field, host); err != nil {
		return err
	}
	if hasPort {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 || strconv.Itoa(p) != port {
			return invalid(field, "port must be 1 to 65535")
		}
	}
	return nil
}

// checkPath accepts absolute file paths made of [A-Za-z0-9_./-] without
// ".." segments.
func checkPath(field, s string) error {
	if len(s) < 2 || len(s) > maxPathLen || s[0] != '/' || s[len(s)-1] == '/' {
		return invalid(field, "must be an absolute file path of at most %d characters", maxPathLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(isAlnum(c) || c == '_' || c == '.' || c == '/' || c == '-') {
			return invalid(field, "may contain only A-Z, a-z, 0-9 and '_./-'")
		}
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == ".." {
			return invalid(field, "must not contain '..'")
		}
	}
	return nil
}

// checkCause accepts hangup causes such as NORMAL_CLEARING: [A-Z0-9_]+.
func checkCause(field, s string) error {
	if s == "" || len(s) > maxNameLen {
		return invalid(field, "must have 1 to %d characters", maxNameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return invalid(field, "may contain only A-Z, 0-9 and '_'")
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// UUIDBridge bridges two existing channels: "uuid_bridge <a> <b>".
func UUIDBridge(a, b string) (Command, error) {
	if err := checkUUID("uuid a", a); err != nil {
		return Command{}, err
	}
	if err := checkUUID("uuid b", b); err != nil {
		return Command{}, err
	}
	return Command{"uuid_bridge " + a + " " + b}, nil
}

// UUIDKill hangs up a channel: "uuid_kill <uuid> [<cause>]". An empty
// cause lets FreeSWITCH use NORMAL_CLEARING.
func UUIDKill(uuid, cause string) (Command, error) {
	if err := checkUUID("uuid", uuid); err != nil {
		return Command{}, err
	}
	if cause == "" {
		return Command{"uuid_kill " + uuid}, nil
	}
	if err := checkCause("cause", cause); err != nil {
		return Command{}, err
	}
	return Command{"uuid_kill " + uuid + " " + cause}, nil
}

// Tones FreeSWITCH generates itself (mod_tone_stream), looping until the
// channel is bridged or hung up. They are constants, never built from
// input, so their '%', '(' and ',' cannot carry anything hostile; they
// contain no space, so they stay one argument of uuid_broadcast.
const (
	ToneRingbackUS = "tone_stream://%(2000,4000,440,480);loops=-1"
	ToneRingbackUK = "tone_stream://%(400,200,400,450);%(400,2000,400,450);loops=-1"
	ToneRingbackEU = "tone_stream://%(1000,4000,425);loops=-1"
)

// UUIDBroadcast plays a file, or one of the Tone constants, to a channel:
// "uuid_broadcast <uuid> <path> <leg>", leg being "aleg", "bleg" or "both"
// ("" means "aleg").
func UUIDBroadcast(uuid, path, leg string) (Command, error) {
	if err := checkUUID("uuid", uuid); err != nil {
		return Command{}, err
	}
	switch path {
	case ToneRingbackUS, ToneRingbackUK, ToneRingbackEU:
	default:
		if err := checkPath("path", path); err != nil {
			return Command{}, err
		}
	}
	switch leg {
	case "":
		leg = "aleg"
	case "aleg", "bleg", "both":
	default:
		return Command{}, invalid("leg", "must be aleg, bleg or both")
	}
	return Command{"uuid_broadcast " + uuid + " " + path + " " + leg}, nil
}

// UUIDBroadcastThenHangup plays a file, or one of the Tone constants, to
// a channel and then hangs it up with cause: "uuid_broadcast <uuid>
// playback!<cause>::<path> aleg". FreeSWITCH queues the hangup behind the
// playback on the channel (switch_ivr_broadcast), so the caller hears the
// whole prompt however late the playback starts on a loaded node; a timer
// (sched_hangup) would cut it short.
func UUIDBroadcastThenHangup(uuid, path, cause string) (Command, error) {
	if _, err := UUIDBroadcast(uuid, path, "aleg"); err != nil {
		return Command{}, err
	}
	if err := checkCause("cause", cause); err != nil {
		return Command{}, err
	}
	return Command{"uuid_broadcast " + uuid + " playback!" + cause + "::" + path + " aleg"}, nil
}

// UUIDSetVar sets a channel variable: "uuid_setvar <uuid> <name> <value>".
func UUIDSetVar(uuid, name, value string) (Command, error) {
	if err := checkUUID("uuid", uuid); err != nil {
		return Command{}, err
	}
	if err := checkVarName("variable name", name); err != nil {
		return Command{}, err
	}
	if err := checkValue("variable value", value); err != nil {
		return Command{}, err
	}
	if value == "" {
		return Command{"uuid_setvar " + uuid + " " + name}, nil
	}
	return Command{"uuid_setvar " + uuid + " " + name + " " + value}, nil
}

// UUIDExists asks whether a channel exists: "uuid_exists <uuid>"; the
// result is "true" or "false".
func UUIDExists(uuid string) (Command, error) {
	if err := checkUUID("uuid", uuid); err != nil {
		return Command{}, err
	}
	return Command{"uuid_exists " + uuid}, nil
}

// UUIDRecord starts or stops recording a channel: "uuid_record <uuid>
// <action> <path>", action being start, stop, mask or unmask.
func UUIDRecord(uuid, action, path string) (Command, error) {
	if err := checkUUID("uuid", uuid); err != nil {
		return Command{}, err
	}
	switch action {
	case "start", "stop", "mask", "unmask":
	default:
		return Command{}, invalid("action", "must be start, stop, mask or unmask")
	}
	if err := checkPath("path", path); err != nil {
		return Command{}, err
	}
	return Command{"uuid_record " + uuid + " " + action + " " + path}, nil
}

// SchedHangup hangs a channel up after a delay, rounded up to whole
// seconds (at least one): "sched_hangup +<secs> <uuid> [<cause>]".
func SchedHangup(after time.Duration, uuid, cause string) (Command, error) {
	if after <= 0 || after > 7*24*time.Hour {
		return Command{}, invalid("delay", "must be between 1s and 7 days")
	}
	if err := checkUUID("uuid", uuid); err != nil {
		return Command{}, err
	}
	secs := int64((after + time.Second - 1) / time.Second)
	line := "sched_hangup +" + strconv.FormatInt(secs, 10) + " " + uuid
	if cause != "" {
		if err := checkCause("cause", cause); err != nil {
			return Command{}, err
		}
		line += " " + cause
	}
	return Command{line}, nil
}

// ShowChannels lists channels as JSON: "show channels as json".
func ShowChannels() Command { return Command{"show channels as json"} }

// Status asks for the node's status: "status".
func Status() Command { return Command{"status"} }

// Version asks for the node's version: "version".
func Version() Command { return Command{"version"} }

// ReadyCheck asks whether the node takes new sessions: "fsctl
// ready_check" answers "true", or "false" while it is paused ("fsctl
// pause", how an operator drains a node) or shutting down. The readiness
// probe runs it: it is cheap and touches no channel.
func ReadyCheck() Command { return Command{"fsctl ready_check"} }

// Hupall hangs up every channel on the node with the given cause.
func Hupall(cause string) (Command, error) {
	if err := checkCause("cause", cause); err != nil {
		return Command{}, err
	}
	return Command{"hupall " + cause}, nil
}

// HashDump lists a mod_hash realm: "hash_dump db <realm>", answered with
// one "D/<realm>_<key>/<value>" line per entry.
func HashDump(realm string) (Command, error) {
	if err := checkName("realm", realm); err != nil {
		return Command{}, err
	}
	return Command{"hash_dump db " + realm}, nil
}

// HashDelete deletes a mod_hash entry: "hash delete/<realm>/<key>".
func HashDelete(realm, key string) (Command, error) {
	if err := checkName("realm", realm); err != nil {
		return Command{}, err
	}
	if err := checkName("key", key); err != nil {
		return Command{}, err
	}
	return Command{"hash delete/" + realm + "/" + key}, nil
}
