package esl

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned for commands and jobs that cannot complete because
// the connection to the node is down or was lost while they were pending.
var ErrClosed = errors.New("esl: connection closed")

// ErrOverflow is the error of a Subscription whose queue exceeded its limit;
// it was closed so that its consumer notices the lost events.
var ErrOverflow = errors.New("esl: subscription queue overflow")

// ErrAuth is returned by a dial attempt that FreeSWITCH refused (wrong
// password or ACL rejection). Run keeps retrying.
var ErrAuth = errors.New("esl: authentication refused")

// ErrJobTimeout is the error of a job whose BACKGROUND_JOB did not arrive
// within its bound (Config.JobTimeout): the node accepted the command but
// its result never came, so the node is marked not ready.
var ErrJobTimeout = errors.New("esl: job result timed out")

// ErrStuck is the cause recorded when a connection was closed because a
// command reply did not arrive within Config.CommandTimeout.
var ErrStuck = errors.New("esl: command reply timed out")

// ReplyError is a "-ERR ..." (or "-USAGE ...") answer from FreeSWITCH, as a
// command reply or a job result.
type ReplyError struct {
	// Text is the reply as FreeSWITCH sent it, without the trailing
	// newline, e.g. "-ERR USER_BUSY".
	Text string
}

// Error implements the error interface.
func (e *ReplyError) Error() string { return "esl: " + e.Text }

// Cause returns the text after "-ERR ", e.g. "USER_BUSY" or "No such
// channel!".
func (e *ReplyError) Cause() string {
	if c, ok := strings.CutPrefix(e.Text, "-ERR"); ok {
		return strings.TrimSpace(c)
	}
	if c, ok := strings.CutPrefix(e.Text, "-USAGE:"); ok {
		return strings.TrimSpace(c)
	}
	return strings.TrimPrefix(e.Text, "-")
}

// parseResult turns a job body into API's result: "+OK <x>\n" gives "<x>",
// "-ERR ...\n" a *ReplyError, anything else (JSON, "true", status text)
// the body without its trailing newline.
func parseResult(body string) (string, error) {
	s := strings.TrimRight(body, "\r\n")
	switch {
	case strings.HasPrefix(s, "+OK"):
		return strings.TrimSpace(s[3:]), nil
	case strings.HasPrefix(s, "-ERR"), strings.HasPrefix(s, "-USAGE"):
		return "", &ReplyError{Text: s}
	}
	return s, nil
}

// Job is a command FreeSWITCH accepted with "bgapi"; its result arrives
// later in a BACKGROUND_JOB event.
type Job struct {
	// ID is the Job-UUID, chosen by the client.
	ID string
	// UUID is the channel uuid for originate jobs, "" otherwise.
	UUID  string
	c     *Client
	line  string // what was run, after "bgapi "
	start time.Time
	timer *time.Timer // fails the job with ErrJobTimeout
	probe bool        // a readiness probe: not reported to OnJobDone
	once  sync.Once
	done  chan struct{}
	body  string
	err   error
}

func newJob(c *Client, id, line string) *Job {
	return &Job{ID: id, line: line, c: c, start: time.Now(), done: make(chan struct{})}
}

// verb is the job's command name ("originate", "uuid_kill"...), its
// label in metrics.
func (j *Job) verb() string {
	v, _, _ := strings.Cut(j.line, " ")
	return v
}

// finish records the outcome once; later calls are ignored. It reports
// the job to Config.OnJobDone.
func (j *Job) finish(body string, err error) {
	j.once.Do(func() {
		if j.timer != nil {
			j.timer.Stop()
		}
		j.body, j.err = body, err
		close(j.done)
		if f := j.c.cfg.OnJobDone; f != nil && !j.probe {
			verb := j.verb()
			if err == nil && strings.HasPrefix(body, "-") {
				err = &ReplyError{Text: strings.TrimRight(body, "\n")}
			}
			f(verb, time.Since(j.start), err)
		}
	})
}

// Done is closed when the job's result is known.
func (j *Job) Done() <-chan struct{} { return j.done }

// Result returns the job's result as API does: "+OK x" gives "x", "-ERR"
// gives a *ReplyError, a lost connection ErrClosed. Before Done is closed
// it returns ("", ErrPending).
func (j *Job) Result() (string, error) {
	select {
	case <-j.done:
	default:
		return "", ErrPending
	}
	if j.err != nil {
		return "", j.err
	}
	return parseResult(j.body)
}

// Body returns the raw BACKGROUND_JOB body ("" before Done or on error).
func (j *Job) Body() string {
	select {
	case <-j.done:
		return j.body
	default:
		return ""
	}
}

// Wait waits for the result or for ctx. When ctx ends first it returns
// ctx.Err() and stops tracking the job (the command may still run on the
// node; for an originate, its events carry Job.UUID).
func (j *Job) Wait(ctx context.Context) (string, error) {
	select {
	case <-j.done:
		return j.Result()
	case <-ctx.Done():
		j.c.forget(j)
		return "", ctx.Err()
	}
}

// ErrPending is Job.Result's error before the job is done.
var ErrPending = errors.New("esl: job pending")
