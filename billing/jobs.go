package billing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"callbridge"

	"github.com/robfig/cron/v3"
)

// Job names.
const (
	JobRollup        = "rollup"
	JobInvoice       = "invoice"
	JobBindingExpiry = "binding-expiry"
	JobStaleCalls    = "stale-calls"
	JobPartitions    = "partitions"
	JobLowBalance    = "low-balance"
	JobReservations  = "reservations"
)

// DefaultSchedules returns the cron expressions jobs run on unless
// configured otherwise, read in the scheduler's zone. It is a function, not
// a package variable, so no caller can change another's defaults.
func DefaultSchedules() map[string]string {
	return map[string]string{
		JobRollup:        "15 0 * * *",
		JobInvoice:       "0 2 2 * *",
		JobBindingExpiry: "* * * * *",
		JobStaleCalls:    "* * * * *",
		JobPartitions:    "30 0 * * *",
		JobLowBalance:    "* * * * *",
		JobReservations:  "*/5 * * * *",
	}
}

// Store is what the billing jobs need from the database.
type Store interface {
	// RollupDirty recomputes every day whose CDRs changed, of every
	// account or of one.
	RollupDirty(ctx context.Context, accountID string) (int64, error)
	// RollupDay recomputes one local day for one or every account.
	RollupDay(ctx context.Context, day time.Time, accountID string) (int64, error)
	// IssueInvoices issues the invoices and credit notes of a closed
	// month.
	IssueInvoices(ctx context.Context, year int, month time.Month, accountID string, now time.Time) ([]*callbridge.Invoice, error)
	// DayUsage returns all accounts' rollups of one day.
	DayUsage(ctx context.Context, day time.Time) ([]callbridge.UsageRow, error)
	// Invoice returns an issued invoice with lines.
	Invoice(ctx context.Context, accountID, id string) (*callbridge.Invoice, error)
	// PruneJobRuns forgets old job runs.
	PruneJobRuns(ctx context.Context, before time.Time) (int64, error)
	// ExpireReservations drops reservations past expiry.
	ExpireReservations(ctx context.Context) (int64, error)
	// PendingLowBalance and LowBalanceHandled are the low-balance outbox.
	PendingLowBalance(ctx context.Context, limit int) ([]callbridge.LowBalanceEvent, error)
	LowBalanceHandled(ctx context.Context, id int64, failure error) error
}

// CDRPartitions keeps the monthly partitions of the CDR table.
type CDRPartitions interface {
	// EnsurePartitions creates the partitions of now's month and of the
	// ahead months after it.
	EnsurePartitions(ctx context.Context, now time.Time, ahead int) (int64, error)
	// RetirePartitions detaches (and drops) old CDR partitions.
	RetirePartitions(ctx context.Context, before time.Time, drop bool) ([]string, error)
}

// Jobs holds the job bodies and what they need. Hooks left nil disable
// their job (it is not scheduled).
type Jobs struct {
	Store Store
	// CDRPartitions are created ahead and retired by the partitions job;
	// nil leaves them alone (the job then only forgets old job runs).
	CDRPartitions CDRPartitions
	Location      *time.Location
	Log           *slog.Logger
	// ReportDir receives reports when jobs run; empty writes none.
	ReportDir string
	// Issuer is printed on the invoices and credit notes written there.
	Issuer Issuer
	// PartitionsAhead is how many months of CDR partitions to keep
	// created after the current one (default 2).
	PartitionsAhead int
	// RetentionMonths, when positive, detaches CDR partitions of months
	// that ended more than that many months ago; DropRetired drops them.
	RetentionMonths int
	DropRetired     bool
	// JobRunRetention is how long job runs are kept (default 90 days).
	JobRunRetention time.Duration
	// Grace is how long after a month ends it stays open to late CDRs
	// (the store's, CALLBRIDGE_INVOICE_GRACE): the invoice job issues
	// the latest month closed at its slot.
	Grace time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time

	// Hooks other features provide; each returns how many rows it
	// touched.
	ExpireBindings func(ctx context.Context) (int, error)
	SweepStale     func(ctx context.Context) (int, error)
	// Webhooks delivers low-balance events; nil leaves them queued.
	Webhooks callbridge.WebhookEnqueuer
}

// List returns the jobs with their schedules: DefaultSchedules overridden
// by schedules (a value of "off" disables a job).
func (j *Jobs) List(schedules map[string]string) []Job {
	spec := func(name string) string {
		if s, ok := schedules[name]; ok {
			return s
		}
		return DefaultSchedules()[name]
	}
	hook := func(name string, f func(context.Context) (int, error)) Job {
		return Job{Name: name, Spec: spec(name), Run: func(ctx context.Context, _ time.Time) (int64, error) {
			n, err := f(ctx)
			return int64(n), err
		}}
	}
	jobs := []Job{
		{Name: JobRollup, Spec: spec(JobRollup), CatchUp: true, Run: j.Rollup},
		{Name: JobInvoice, Spec: spec(JobInvoice), CatchUp: true, Run: j.Invoice},
		{Name: JobPartitions, Spec: spec(JobPartitions), CatchUp: true, Run: j.Partitions},
		{Name: JobReservations, Spec: spec(JobReservations), Run: func(ctx context.Context, _ time.Time) (int64, error) {
			return j.Store.ExpireReservations(ctx)
		}},
	}
	if j.Webhooks != nil {
		jobs = append(jobs, Job{Name: JobLowBalance, Spec: spec(JobLowBalance), Run: j.LowBalance})
	}
	for _, h := range []struct {
		name string
		f    func(context.Context) (int, error)
	}{
		{JobBindingExpiry, j.ExpireBindings}, {JobStaleCalls, j.SweepStale},
	} {
		if h.f != nil {
			jobs = append(jobs, hook(h.name, h.f))
		}
	}
	return jobs
}

func (j *Jobs) loc() *time.Location {
	if j.Location == nil {
		return time.UTC
	}
	return j.Location
}

func (j *Jobs) log() *slog.Logger {
	if j.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return j.Log
}

// RollupDay returns the day a rollup slot closes: the local day before
// the slot.
func RollupDay(slot time.Time, loc *time.Location) time.Time {
	t := slot.In(loc)
	return time.Date(t.Year(), t.Month(), t.Day()-1, 0, 0, 0, 0, time.UTC)
}

// InvoiceMonth returns the month an invoice slot issues: the latest
// local month closed at the slot (callbridge.LatestClosedMonth), so a
// slot run late, or caught up, still issues its own month, and a slot
// scheduled before the grace ends issues the month before.
func InvoiceMonth(slot time.Time, loc *time.Location, grace time.Duration) (int, time.Month) {
	return callbridge.LatestClosedMonth(loc, grace, slot)
}

func (j *Jobs) now() time.Time {
	if j.Now == nil {
		return time.Now()
	}
	return j.Now()
}

// Rollup recomputes every day whose CDRs changed, recomputes the day the
// slot closes in full, and writes that day's usage report.
func (j *Jobs) Rollup(ctx context.Context, slot time.Time) (int64, error) {
	n, err := j.Store.RollupDirty(ctx, "")
	if err != nil {
		return n, err
	}
	day := RollupDay(slot, j.loc())
	m, err := j.Store.RollupDay(ctx, day, "")
	if err != nil {
		return n + m, err
	}
	if j.ReportDir != "" {
		rows, err := j.Store.DayUsage(ctx, day)
		if err != nil {
			return n + m, err
		}
		if err := j.writeDayReport(day, rows); err != nil {
			return n + m, err
		}
	}
	return n + m, nil
}

// Invoice issues the invoices and credit notes of the month the slot
// closes (InvoiceMonth) and writes each as JSON, CSV and HTML to the
// report directory.
func (j *Jobs) Invoice(ctx context.Context, slot time.Time) (int64, error) {
	y, m := InvoiceMonth(slot, j.loc(), j.Grace)
	invs, err := j.Store.IssueInvoices(ctx, y, m, "", j.now())
	if err != nil {
		return int64(len(invs)), err
	}
	if j.ReportDir != "" {
		for _, inv := range invs {
			if _, err := WriteInvoiceFiles(j.ReportDir, inv, j.Issuer); err != nil {
				return int64(len(invs)), err
			}
		}
	}
	return int64(len(invs)), nil
}

// Partitions keeps CDR partitions created ahead, retires old ones when a
// retention is configured, and forgets old job runs.
func (j *Jobs) Partitions(ctx context.Context, slot time.Time) (int64, error) {
	ahead := j.PartitionsAhead
	if ahead <= 0 {
		ahead = 2
	}
	now := j.now()
	var n int64
	if j.CDRPartitions != nil {
		var err error
		if n, err = j.CDRPartitions.EnsurePartitions(ctx, now, ahead); err != nil {
			return n, err
		}
	}
	if j.CDRPartitions != nil && j.RetentionMonths > 0 {
		cut := time.Date(now.UTC().Year(), now.UTC().Month()-time.Month(j.RetentionMonths), 1, 0, 0, 0, 0, time.UTC)
		names, err := j.CDRPartitions.RetirePartitions(ctx, cut, j.DropRetired)
		n += int64(len(names))
		if err != nil {
			return n, err
		}
		for _, name := range names {
			j.log().Info("cdr partition retired", "partition", name, "dropped", j.DropRetired)
		}
	}
	keep := j.JobRunRetention
	if keep <= 0 {
		keep = 90 * 24 * time.Hour
	}
	p, err := j.Store.PruneJobRuns(ctx, now.Add(-keep))
	return n + p, err
}

// LowBalance hands pending low-balance events to the webhook outbox.
func (j *Jobs) LowBalance(ctx context.Context, _ time.Time) (int64, error) {
	es, err := j.Store.PendingLowBalance(ctx, 500)
	if err != nil {
		return 0, err
	}
	var n int64
	var errs []error
	for _, e := range es {
		payload := map[string]any{
			"event": "balance.low", "account_id": e.AccountID,
			"balance_micros": e.Balance, "threshold_micros": e.Threshold, "at": e.CreatedAt,
		}
		err := j.Webhooks.EnqueueWebhook(ctx, e.AccountID, e.URL, "balance.low", "balance:"+e.AccountID,
			fmt.Sprintf("balance.low:%d", e.ID), payload)
		if herr := j.Store.LowBalanceHandled(ctx, e.ID, err); herr != nil {
			errs = append(errs, herr)
			continue
		}
		if err == nil {
			n++
		} else {
			errs = append(errs, fmt.Errorf("low-balance event %d: %w", e.ID, err))
		}
	}
	return n, errors.Join(errs...)
}

func (j *Jobs) writeDayReport(day time.Time, rows []callbridge.UsageRow) error {
	dir := filepath.Join(j.ReportDir, "usage")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("billing: report dir: %w", err)
	}
	rep := &callbridge.UsageReport{From: day, To: day.AddDate(0, 0, 1), GroupBy: "account_destination_carrier", Rows: rows}
	for _, r := range rows {
		addUsage(&rep.Total, r)
	}
	rep.Total.Key = "total"
	base := filepath.Join(dir, day.Format(time.DateOnly))
	if err := writeFile(base+".json", func(f *os.File) error { return WriteUsageJSON(f, rep) }); err != nil {
		return err
	}
	return writeFile(base+".csv", func(f *os.File) error { return WriteUsageCSV(f, rep, true) })
}

func addUsage(t *callbridge.UsageRow, r callbridge.UsageRow) {
	t.Calls += r.Calls
	t.Answered += r.Answered
	t.BilledMS += r.BilledMS
	t.Sell += r.Sell
	t.Buy += r.Buy
	t.Margin += r.Margin
}

// WriteInvoiceFiles writes inv as JSON, CSV and HTML under
// dir/invoices/<period>/<number>.*, issued by issuer (a draft under
// DRAFT-<kind>-<account>[-<period>].*) and returns the HTML file's path.
// Files are written to a temporary name and renamed, so a reader never
// sees half a report.
func WriteInvoiceFiles(dir string, inv *callbridge.Invoice, issuer Issuer) (string, error) {
	d := filepath.Join(dir, "invoices", inv.Period)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("billing: report dir: %w", err)
	}
	name := inv.Number
	if inv.Draft {
		name = "DRAFT-" + inv.Kind + "-" + inv.AccountID
		if inv.Kind == callbridge.DocCreditNote {
			name += "-" + inv.Period
		}
	}
	base := filepath.Join(d, name)
	if err := writeFile(base+".json", func(f *os.File) error { return WriteInvoiceJSON(f, inv) }); err != nil {
		return "", err
	}
	if err := writeFile(base+".csv", func(f *os.File) error { return WriteInvoiceCSV(f, inv) }); err != nil {
		return "", err
	}
	if err := writeFile(base+".html", func(f *os.File) error { return WriteInvoiceHTML(f, inv, issuer) }); err != nil {
		return "", err
	}
	return base + ".html", nil
}

func writeFile(path string, write func(*os.File) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("billing: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("billing: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("billing: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("billing: write %s: %w", path, err)
	}
	return nil
}

// LateInvoiceMonths returns the months, of the year from from, whose
// invoices the invoice schedule spec (read in loc) issues a month late:
// no slot in the month after them comes after their grace, so the first
// slot that issues them is a month later still. A spec that does not
// parse, or "off", returns nothing (NewScheduler reports it).
func LateInvoiceMonths(spec string, loc *time.Location, grace time.Duration, from time.Time) []string {
	if spec == "" || spec == "off" {
		return nil
	}
	sched, err := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor).Parse(spec)
	if err != nil {
		return nil
	}
	f := from.In(loc)
	first := time.Date(f.Year(), f.Month(), 1, 0, 0, 0, 0, loc)
	var late []string
	for i := 0; i < 12; i++ {
		start, end := first.AddDate(0, i, 0), first.AddDate(0, i+1, 0)
		prev := start.AddDate(0, -1, 0)
		onTime := false
		for t := sched.Next(start.Add(-time.Nanosecond)); !t.IsZero() && t.Before(end); t = sched.Next(t) {
			if y, m := InvoiceMonth(t, loc, grace); y == prev.Year() && m == prev.Month() {
				onTime = true
				break
			}
		}
		if !onTime {
			late = append(late, prev.Format("2006-01"))
		}
	}
	return late
}
