package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"callbridge"
	"callbridge/billing"
	"callbridge/postgres"
)

const billUsage = `usage: callbridge bill rollup  --date YYYY-MM-DD [--account ID]
       callbridge bill invoice --month YYYY-MM [--account ID] [--report-dir DIR] [--draft]
       callbridge bill report usage   --account ID --from T --to T [--group-by day|destination|carrier|binding] [--format csv|json]
       callbridge bill report invoice --account ID --id INVOICE_ID [--format html|csv|json] [--out FILE]
       callbridge bill unrated --month YYYY-MM [--account ID] [--format csv|json]
       callbridge bill jobs [--job NAME] [--limit N]

Days and months are read in --timezone (env CALLBRIDGE_TIMEZONE, default UTC);
rollups of an account and month made in one zone refuse runs in another.
bill rollup recomputes the day for the account named, or for every account.
bill invoice issues invoices (and credit notes) only for a month that ended
at least CALLBRIDGE_INVOICE_GRACE (default 24h) ago; --draft shows what it
would issue, for any month, and issues nothing. Documents name the issuer
of CALLBRIDGE_ISSUER_NAME, _ADDRESS and _TAX_NUMBER, as serve does.
bill unrated lists the month's calls no rate priced (flag unrated, not
charged) or the deck's default rate priced (unrated_default), with the
number a rate must match: add the rates, then callbridge rerate the month.
Every command is idempotent: re-running it for the same period changes no
totals; an issued invoice is never changed.`

// runBill runs the billing jobs by hand for any past period and prints
// reports.
func runBill(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, billUsage)
		return usageError{fmt.Errorf("bill: missing subcommand")}
	}
	verb, args := args[0], args[1:]
	if verb == "report" {
		if len(args) == 0 {
			fmt.Fprintln(stderr, billUsage)
			return usageError{fmt.Errorf("bill report: want usage or invoice")}
		}
		verb, args = "report "+args[0], args[1:]
	}
	var (
		date, month, accountID, reportDir, tz, from, to, groupBy, format, id, out, job string
		limit                                                                          int
		draft                                                                          bool
	)
	_, dbURL, err := toolFlags("bill "+verb, args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&tz, "timezone", "", "IANA zone of days and months (env CALLBRIDGE_TIMEZONE, default UTC)")
		fs.StringVar(&accountID, "account", "", "account id")
		switch verb {
		case "rollup":
			fs.StringVar(&date, "date", "", "day to roll up, YYYY-MM-DD")
		case "invoice":
			fs.StringVar(&month, "month", "", "month to invoice, YYYY-MM")
			fs.StringVar(&reportDir, "report-dir", "", "write invoices here (env CALLBRIDGE_REPORT_DIR, default <state dir>/reports)")
			fs.BoolVar(&draft, "draft", false, "compute the documents without issuing them (any month)")
		case "report usage":
			fs.StringVar(&from, "from", "", "start, RFC 3339 or YYYY-MM-DD (UTC)")
			fs.StringVar(&to, "to", "", "end (exclusive), RFC 3339 or YYYY-MM-DD (UTC)")
			fs.StringVar(&groupBy, "group-by", "day", "day, destination, carrier or binding")
			fs.StringVar(&format, "format", "csv", "csv or json")
		case "report invoice":
			fs.StringVar(&id, "id", "", "invoice id")
			fs.StringVar(&format, "format", "html", "html, csv or json")
			fs.StringVar(&out, "out", "", "write to this file instead of standard output")
		case "unrated":
			fs.StringVar(&month, "month", "", "month to list, YYYY-MM")
			fs.StringVar(&format, "format", "csv", "csv or json")
		case "jobs":
			fs.StringVar(&job, "job", "", "only this job")
			fs.IntVar(&limit, "limit", 50, "how many runs")
		}
	})
	if err != nil {
		return err
	}
	if tz == "" {
		tz = getenv("CALLBRIDGE_TIMEZONE")
	}
	if tz == "" {
		tz = "UTC"
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return usageError{fmt.Errorf("bill: invalid time zone %q: %v", tz, err)}
	}
	db, err := postgres.Open(ctx, dbURL, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	host, _ := os.Hostname()
	store := postgres.NewBillingStore(db, loc, fmt.Sprintf("%s/%d bill", host, os.Getpid()))
	if store.Grace, err = invoiceGrace(getenv); err != nil {
		return usageError{fmt.Errorf("bill: %w", err)}
	}
	issuer, err := issuerFromEnv(getenv)
	if err != nil {
		return usageError{fmt.Errorf("bill: %w", err)}
	}

	switch verb {
	case "rollup":
		d, err := time.Parse(time.DateOnly, date)
		if err != nil {
			return usageError{fmt.Errorf("bill rollup: --date must be YYYY-MM-DD")}
		}
		// Exactly the day and the account(s) asked for: other days and
		// accounts stay as they are until their own run.
		run, _, err := store.RunJob(ctx, "manual-rollup", time.Now(), true, func(ctx context.Context) (int64, error) {
			return store.RollupDay(ctx, d, accountID)
		})
		if err != nil {
			return err
		}
		scope := "every account"
		if accountID != "" {
			scope = "account " + accountID
		}
		fmt.Fprintf(stdout, "rolled up %s (%s, %s): %d rollup rows written\n", date, scope, loc, run.Rows)
		return nil

	case "invoice":
		m, err := time.Parse("2006-01", month)
		if err != nil {
			return usageError{fmt.Errorf("bill invoice: --month must be YYYY-MM")}
		}
		if reportDir, err = billReportDir(reportDir, getenv); err != nil {
			return usageError{fmt.Errorf("bill invoice: %w", err)}
		}
		var invs []*callbridge.Invoice
		if draft {
			invs, err = store.DraftInvoices(ctx, m.Year(), m.Month(), accountID, time.Now())
		} else {
			// The clock decides whether the month is closed: refuse
			// before recording a run.
			if err := callbridge.CheckPeriodClosed(m.Year(), m.Month(), loc, store.Grace, time.Now()); err != nil {
				return fmt.Errorf("bill invoice: %s", callbridge.ErrorMessage(err))
			}
			_, _, err = store.RunJob(ctx, "manual-invoice", time.Now(), true, func(ctx context.Context) (int64, error) {
				var err error
				invs, err = store.IssueInvoices(ctx, m.Year(), m.Month(), accountID, time.Now())
				return int64(len(invs)), err
			})
		}
		if err != nil {
			if code := callbridge.ErrorCode(err); code != callbridge.EINTERNAL {
				return fmt.Errorf("bill invoice: %s", callbridge.ErrorMessage(err))
			}
			return err
		}
		verb := "issued"
		if draft {
			verb = "drafted (not issued)"
		}
		for _, inv := range invs {
			path, err := billing.WriteInvoiceFiles(reportDir, inv, issuer)
			if err != nil {
				return err
			}
			what := "invoice"
			if inv.Kind == callbridge.DocCreditNote {
				what = "credit note for " + inv.Period + ", correcting " + inv.CorrectsNumber + ","
			}
			fmt.Fprintf(stdout, "%s %s %s for account %s: total %s %s (%d lines) -> %s\n", verb, what,
				inv.Number, inv.AccountID, callbridge.FormatMinor(inv.Total, inv.Exponent), inv.Currency, len(inv.Lines), path)
		}
		fmt.Fprintf(stdout, "%d document(s) %s for %s\n", len(invs), verb, month)
		return nil

	case "report usage":
		f := callbridge.UsageFilter{GroupBy: groupBy}
		if f.From, err = parseBillTime(from); err != nil {
			return usageError{fmt.Errorf("bill report usage: --from: %v", err)}
		}
		if f.To, err = parseBillTime(to); err != nil {
			return usageError{fmt.Errorf("bill report usage: --to: %v", err)}
		}
		rep, err := store.Usage(ctx, accountID, f)
		if err != nil {
			return err
		}
		if format == "json" {
			return billing.WriteUsageJSON(stdout, rep)
		}
		return billing.WriteUsageCSV(stdout, rep, true)

	case "report invoice":
		inv, err := store.Invoice(ctx, accountID, id)
		if err != nil {
			return err
		}
		w := stdout
		if out != "" {
			f, err := os.Create(out)
			if err != nil {
				return err
			}
			defer f.Close()
			w = f
		}
		switch format {
		case "html":
			err = billing.WriteInvoiceHTML(w, inv, issuer)
		case "csv":
			err = billing.WriteInvoiceCSV(w, inv)
		case "json":
			err = billing.WriteInvoiceJSON(w, inv)
		default:
			return usageError{fmt.Errorf("bill report invoice: --format must be html, csv or json")}
		}
		if err != nil {
			return err
		}
		if out != "" {
			fmt.Fprintln(stderr, "wrote", out)
		}
		return nil

	case "unrated":
		m, err := time.Parse("2006-01", month)
		if err != nil {
			return usageError{fmt.Errorf("bill unrated: --month must be YYYY-MM")}
		}
		calls, err := store.UnratedCalls(ctx, m.Year(), m.Month(), accountID)
		if err != nil {
			return err
		}
		switch format {
		case "csv":
			return billing.WriteUnratedCSV(stdout, calls)
		case "json":
			return billing.WriteUnratedJSON(stdout, calls)
		}
		return usageError{fmt.Errorf("bill unrated: --format must be csv or json")}

	case "jobs":
		runs, err := store.JobRuns(ctx, job, limit)
		if err != nil {
			return err
		}
		for _, r := range runs {
			end := "-"
			if r.FinishedAt != nil {
				end = r.FinishedAt.Format(time.RFC3339)
			}
			fmt.Fprintf(stdout, "%-16s slot %s  %-7s rows %-8d started %s ended %s  %s %s\n",
				r.Job, r.Slot.Format(time.RFC3339), r.Outcome, r.Rows, r.StartedAt.Format(time.RFC3339), end, r.Node, r.Error)
		}
		return nil
	}
	fmt.Fprintln(stderr, billUsage)
	return usageError{fmt.Errorf("bill: unknown subcommand %q", verb)}
}

func parseBillTime(s string) (time.Time, error) {
	layout := time.RFC3339
	if len(s) == len(time.DateOnly) {
		layout = time.DateOnly
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time or a YYYY-MM-DD date", s)
	}
	return t.UTC(), nil
}

// billingSchedules reads job schedules from CALLBRIDGE_SCHEDULE_<JOB>
// (the job name upper-cased, '-' as '_'), for example
// CALLBRIDGE_SCHEDULE_ROLLUP="15 0 * * *" or CALLBRIDGE_SCHEDULE_LOW_BALANCE=off.
// Jobs without one keep billing.DefaultSchedules().
func billingSchedules(getenv func(string) string) map[string]string {
	out := map[string]string{}
	for name := range billing.DefaultSchedules() {
		env := scheduleEnv(name)
		if v := strings.TrimSpace(getenv(env)); v != "" {
			out[name] = v
		}
	}
	return out
}

// billReportDir is where bill invoice writes: --report-dir (a relative one
// is taken from the working directory, where the operator typed it), else
// CALLBRIDGE_REPORT_DIR, else the reports directory under the state
// directory, as serve's jobs use.
func billReportDir(flagDir string, getenv func(string) string) (string, error) {
	if flagDir != "" {
		return filepath.Abs(flagDir)
	}
	cfg := &Config{StateDir: getenv("CALLBRIDGE_STATE_DIR"), ReportDir: getenv("CALLBRIDGE_REPORT_DIR"), SpoolDir: "/unused"}
	if err := cfg.fillStateDirs(getenv, os.Geteuid()); err != nil {
		return "", err
	}
	return cfg.ReportDir, nil
}
