package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"callbridge/cdr"
	"callbridge/postgres"
	"callbridge/rating"
)

const rerateUsage = `usage: callbridge rates rerate --from RFC3339|YYYY-MM-DD --to RFC3339|YYYY-MM-DD [--account ID]

Prices again, with the decks in force at each call's time, every CDR that
started in [from, to), of one account or all. A CDR whose price or flags
change is updated in place and flagged rerated; its old and new prices are
recorded in cdr_ratings. Sums over CDRs (rollups) therefore count each call
once, at its current price: re-run the rollups of the period afterwards.`

// runRerate implements "callbridge rates rerate". args are the arguments
// after "rerate".
func runRerate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var fromS, toS, accountID string
	pos, u, err := toolFlags("rates rerate", args, getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&fromS, "from", "", "start of the period (inclusive), RFC 3339 or YYYY-MM-DD (UTC)")
		fs.StringVar(&toS, "to", "", "end of the period (exclusive), RFC 3339 or YYYY-MM-DD (UTC)")
		fs.StringVar(&accountID, "account", "", "only this account's CDRs")
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintln(stderr, rerateUsage)
		return usageError{fmt.Errorf("rates rerate: unexpected argument %q", pos[0])}
	}
	from, err := parseRerateTime("from", fromS)
	if err != nil {
		fmt.Fprintln(stderr, rerateUsage)
		return err
	}
	to, err := parseRerateTime("to", toS)
	if err != nil {
		fmt.Fprintln(stderr, rerateUsage)
		return err
	}
	if !from.Before(to) {
		return usageError{fmt.Errorf("rates rerate: --to must be after --from")}
	}
	db, err := postgres.Open(ctx, u, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	// Every deck, compiled once: each CDR is priced by the deck in force
	// at its own time.
	decks := &rating.Registry{}
	if err := postgres.NewDeckSync(db, decks, nil).Reload(ctx); err != nil {
		return fmt.Errorf("rates rerate: %w", err)
	}
	pricer := cdr.NewPricer(decks, nil)
	sum, err := postgres.NewCDRStore(db).Rerate(ctx, postgres.RerateFilter{From: from, To: to, AccountID: accountID}, pricer.Price)
	if err != nil {
		return fmt.Errorf("rates rerate: %w", err)
	}
	fmt.Fprintf(stdout, "re-rating %s: %d CDRs priced, %d changed; sell %s, buy %s\n",
		sum.ID, sum.Seen, sum.Changed, signedMoney(sum.SellDelta), signedMoney(sum.BuyDelta))
	return nil
}

func parseRerateTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, usageError{fmt.Errorf("rates rerate: --%s is required", name)}
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, usageError{fmt.Errorf("rates rerate: --%s must be an RFC 3339 time or YYYY-MM-DD", name)}
}

func signedMoney(m int64) string {
	if m < 0 {
		return "-" + rating.FormatMoney(-m)
	}
	return "+" + rating.FormatMoney(m)
}
