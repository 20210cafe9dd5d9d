//go:build faults

package faults

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"callbridge/esl/esltest"
	"callbridge/postgres/pgtest"
)

// bandScript: A (4930666…) answers at once and talks 120 s; B (4930667…)
// answers at once and stays until hung up.
const bandScript = `{"rules":[
 {"prefix":"4930666","outcome":"answer","talk_ms":120000},
 {"prefix":"4930667","outcome":"answer","talk_ms":0}]}`

// bandDeck prices 4930… at 0.06 a minute from 08:00 to 20:00 UTC and
// 0.006 otherwise, per second.
const bandDeck = "prefix,description,band,per_minute,connect_fee,min_charge,first_increment,next_increment,days,from,until,effective_from,effective_until,priority\n" +
	"4930,Berlin,peak,0.06,0,0,1,1,all,08:00,20:00,,,0\n" +
	"4930,Berlin,offpeak,0.006,0,0,1,1,all,00:00,08:00,,,0\n" +
	"4930,Berlin,offpeak,0.006,0,0,1,1,all,20:00,24:00,,,0\n"

// Micro-units per millisecond of each band, times 60000.
const (
	peakPerMinute = 60000
	offPerMinute  = 6000
)

// legCDR is the priced CDR of a callback's leg.
type legCDR struct {
	Start  time.Time  `db:"start_at"`
	Answer *time.Time `db:"answer_at"`
	End    time.Time  `db:"end_at"`
	BillMS int64      `db:"bill_ms"`
	Sell   int64      `db:"sell_micros"`
	Flags  string     `db:"flags"`
}

// callAcross places a callback whose A leg is answered just before at and
// talks 120 s of simulated time across it, and returns A's CDR.
func callAcross(t *testing.T, c *controller, db *sql.DB, fs *esltest.Server, key string, at time.Time, n int) legCDR {
	t.Helper()
	fs.Jump(at.Add(-60 * time.Second).Sub(fs.Now()))
	id, r := c.postCallback(key, fmt.Sprintf("+4930666%03d", n), fmt.Sprintf("+4930667%03d", n))
	if id == "" {
		t.Fatalf("POST /v1/callbacks = %d %s", r.Status, r.Raw)
	}
	waitStatus(t, c, []string{id}, "bridged", 30*time.Second)
	if now := fs.Now(); !now.Before(at) {
		t.Fatalf("the call was bridged at %v, after the boundary %v", now, at)
	}
	fs.Jump(2 * time.Minute)
	waitStatus(t, c, []string{id}, "completed", 30*time.Second)
	var cdr legCDR
	waitFor(t, 30*time.Second, "A's CDR", func() (bool, string) {
		err := pgtest.Get(context.Background(), db, &cdr, `SELECT start_at, answer_at, end_at, bill_ms, sell_micros, array_to_string(flags, ',') AS flags
			FROM cdrs WHERE callback_id = $1 AND leg = 'a'`, id)
		return err == nil, fmt.Sprint(err)
	})
	if cdr.Answer == nil || !cdr.Answer.Before(at) || !cdr.End.After(at) {
		t.Fatalf("A's CDR %+v does not cross %v", cdr, at)
	}
	return cdr
}

// TestFaultClockJumps moves the simulated clock of the node across a rate
// band boundary (the call is split and each part priced by its band) and
// across a month end (the call and its rollup belong to the day and month
// it started in).
func TestFaultClockJumps(t *testing.T) {
	dbURL, db := newDatabase(t)
	fs := newNode(t, 1, bandScript)
	c := startController(t, controllerConfig{DatabaseURL: dbURL, ESL: []string{fs.Addr()}})
	c.waitReady()
	acct, key := c.createAccount("Bands")
	r := c.do("POST", "/v1/rate-decks", key, `{"name":"bands","currency":"EUR","time_zone":"UTC","precision":6}`)
	if r.Status != 201 {
		t.Fatalf("create deck: %d %s", r.Status, r.Raw)
	}
	deck, _ := r.Body["id"].(string)
	req, _ := http.NewRequest("POST", c.base+"/v1/rate-decks/"+deck+"/rates", strings.NewReader(bandDeck))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode >= 300 {
		t.Fatalf("import rates: %v %v", err, resp)
	}
	resp.Body.Close()

	t.Run("band boundary", func(t *testing.T) {
		now := fs.Now().UTC()
		boundary := time.Date(now.Year(), now.Month(), now.Day(), 20, 0, 0, 0, time.UTC)
		if !boundary.After(now.Add(2 * time.Minute)) {
			boundary = boundary.AddDate(0, 0, 1)
		}
		cdr := callAcross(t, c, db, fs, key, boundary, 1)
		peakMS := boundary.Sub(*cdr.Answer).Milliseconds()
		offMS := cdr.BillMS - peakMS
		want := (peakMS*peakPerMinute + offMS*offPerMinute) / 60000
		t.Logf("answered %v, ended %v: %d ms peak, %d ms off-peak, sell %d micros (split %d)", cdr.Answer.UTC(), cdr.End.UTC(), peakMS, offMS, cdr.Sell, want)
		// Per-second increments round each part up by under a second.
		if d := cdr.Sell - want; d < 0 || d > (peakPerMinute+offPerMinute)/60 {
			t.Errorf("sell %d micros, want the split price %d (all peak %d, all off-peak %d)", cdr.Sell, want,
				cdr.BillMS*peakPerMinute/60000, cdr.BillMS*offPerMinute/60000)
		}
	})

	t.Run("month end", func(t *testing.T) {
		now := fs.Now().UTC()
		monthEnd := time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC)
		if !monthEnd.After(now.Add(2 * time.Minute)) {
			monthEnd = monthEnd.AddDate(0, 1, 0)
		}
		cdr := callAcross(t, c, db, fs, key, monthEnd, 2)
		lastDay, firstDay := monthEnd.AddDate(0, 0, -1), monthEnd
		for _, day := range []time.Time{lastDay, firstDay} {
			cmd := exec.Command(binary, "bill", "rollup", "--date", day.Format("2006-01-02"))
			cmd.Env = append(os.Environ(), "CALLBRIDGE_DATABASE_URL="+dbURL)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("bill rollup %s: %v\n%s", day.Format("2006-01-02"), err, out)
			}
		}
		var rows []struct {
			Day    time.Time `db:"day"`
			Calls  int64     `db:"calls"`
			BillMS int64     `db:"billed_ms"`
			Sell   int64     `db:"sell"`
		}
		if err := pgtest.Select(context.Background(), db, &rows, `SELECT day, sum(calls) AS calls, sum(billed_ms) AS billed_ms, sum(sell) AS sell FROM rollups
			WHERE account_id = $1 AND day IN ($2::date, $3::date) GROUP BY day`, acct, lastDay.Format("2006-01-02"), firstDay.Format("2006-01-02")); err != nil {
			t.Fatal(err)
		}
		t.Logf("call started %v, ended %v; rollups %+v", cdr.Start.UTC(), cdr.End.UTC(), rows)
		if len(rows) != 1 || rows[0].Day.Format("2006-01-02") != lastDay.Format("2006-01-02") {
			t.Fatalf("rollups %+v: want the call on %s only, the day it started", rows, lastDay.Format("2006-01-02"))
		}
		if rows[0].BillMS < cdr.BillMS || rows[0].Sell < cdr.Sell {
			t.Errorf("rollup of %s %+v lacks A's leg (%d ms, %d micros)", lastDay.Format("2006-01-02"), rows[0], cdr.BillMS, cdr.Sell)
		}
	})
}
