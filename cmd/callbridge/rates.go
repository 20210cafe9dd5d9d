package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/rating"
)

const ratesUsage = `usage: callbridge rates decks [--account ID]
       callbridge rates create-deck (--account ID | --gateway GW) --name NAME --currency EUR --time-zone Europe/Berlin
             [--precision 6] [--rounding up|half_up|down] [--short-ms 1000] [--holidays 2025-12-25,...]
             [--effective-from RFC3339] [--default-per-minute 0.3 [--default-connect-fee 0] [--default-min-charge 0]
             [--default-first-increment 60] [--default-next-increment 60]]
       callbridge rates import (--deck ID | --account ID) --file rates.csv [--replace]
       callbridge rates export (--deck ID | --account ID) [--file rates.csv]
       callbridge rates rerate --from T --to T [--account ID]   (re-price stored CDRs)

A deck's CSV columns: ` + "prefix,description,band,per_minute,connect_fee,min_charge,first_increment,next_increment,days,from,until,effective_from,effective_until,priority" + `
(header required; prefix and per_minute mandatory; money in currency units). --account picks
the account's deck in force now. A bad file is refused whole, with the line of every bad row.`

// runRates manages rate decks from the command line: list and create
// decks, import a CSV file into one (all rows or none) and export one.
func runRates(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, ratesUsage)
		return usageError{fmt.Errorf("rates: missing subcommand")}
	}
	verb := args[0]
	if verb == "rerate" {
		return runRerate(ctx, args[1:], getenv, stdout, stderr)
	}
	var (
		deckID, accountID, gateway, file, name, currency, zone, rounding, holidays, effective string
		precision                                                                             int
		shortMS                                                                               int64
		replace                                                                               bool
		defPerMinute, defConnect, defMin                                                      string
		defFirst, defNext                                                                     int
	)
	pos, u, err := toolFlags("rates "+verb, args[1:], getenv, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&accountID, "account", "", "account id")
		switch verb {
		case "import", "export":
			fs.StringVar(&deckID, "deck", "", "deck id")
			fs.StringVar(&file, "file", "", "CSV file (export: default standard output)")
			if verb == "import" {
				fs.BoolVar(&replace, "replace", false, "replace every rate of the deck instead of adding")
			}
		case "create-deck":
			fs.StringVar(&gateway, "gateway", "", "carrier gateway (buy rates) instead of --account")
			fs.StringVar(&name, "name", "", "deck name")
			fs.StringVar(&currency, "currency", "", "ISO 4217 currency")
			fs.StringVar(&zone, "time-zone", "", "IANA time zone of the time bands")
			fs.IntVar(&precision, "precision", 6, "decimals amounts are rounded to, 0 to 6")
			fs.StringVar(&rounding, "rounding", "up", "rounding rule: up, half_up or down")
			fs.Int64Var(&shortMS, "short-ms", rating.DefaultShortMS, "calls shorter than this (ms) are not charged")
			fs.StringVar(&holidays, "holidays", "", "comma-separated YYYY-MM-DD holidays")
			fs.StringVar(&effective, "effective-from", "", "RFC 3339 time the deck takes over (default: always)")
			fs.StringVar(&defPerMinute, "default-per-minute", "", "default rate's price per minute (none when empty)")
			fs.StringVar(&defConnect, "default-connect-fee", "0", "default rate's connect fee")
			fs.StringVar(&defMin, "default-min-charge", "0", "default rate's minimum charge")
			fs.IntVar(&defFirst, "default-first-increment", 60, "default rate's first increment, seconds")
			fs.IntVar(&defNext, "default-next-increment", 60, "default rate's next increments, seconds")
		}
	})
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		fmt.Fprintln(stderr, ratesUsage)
		return usageError{fmt.Errorf("rates %s: unexpected argument %q", verb, pos[0])}
	}
	switch verb {
	case "decks", "import", "export", "create-deck":
	default:
		fmt.Fprintln(stderr, ratesUsage)
		return usageError{fmt.Errorf("rates: unknown subcommand %q", verb)}
	}
	maxDeck, maxAccount, err := rateCaps(getenv)
	if err != nil {
		return err
	}
	db, err := postgres.Open(ctx, u, nil)
	if err != nil {
		return err
	}
	defer db.Close()
	decks := postgres.NewRateDeckService(db)
	decks.MaxDeckRates, decks.MaxAccountRates = maxDeck, maxAccount

	switch verb {
	case "decks":
		return listDecks(ctx, decks, accountID, stdout)
	case "create-deck":
		d := &rating.DeckInfo{AccountID: accountID, Gateway: gateway, Name: name, Currency: currency, TimeZone: zone,
			Precision: precision, Rounding: rating.Rounding(rounding), ShortMS: shortMS}
		if holidays != "" {
			d.Holidays = strings.Split(holidays, ",")
		}
		if effective != "" {
			if d.EffectiveFrom, err = time.Parse(time.RFC3339, effective); err != nil {
				return usageError{fmt.Errorf("rates create-deck: --effective-from must be an RFC 3339 time")}
			}
		}
		if defPerMinute != "" {
			def := &rating.Rate{FirstIncrement: int32(defFirst), NextIncrement: int32(defNext)}
			for _, m := range []struct {
				flag, value string
				dst         *int64
			}{{"default-per-minute", defPerMinute, &def.PerMinute}, {"default-connect-fee", defConnect, &def.ConnectFee}, {"default-min-charge", defMin, &def.MinCharge}} {
				if *m.dst, err = rating.ParseMoney(m.value); err != nil {
					return usageError{fmt.Errorf("rates create-deck: --%s: %v", m.flag, err)}
				}
			}
			d.Default = def
		}
		if err := decks.CreateRateDeck(ctx, d); err != nil {
			return fmt.Errorf("rates create-deck: %s", describe(err))
		}
		fmt.Fprintf(stdout, "rate deck %s created (%s)\n%s\n", d.ID, d.Name, d.ID)
		return nil
	}

	id, err := pickDeck(ctx, decks, deckID, accountID)
	if err != nil {
		return err
	}
	if verb == "export" {
		rates, err := decks.Rates(ctx, id)
		if err != nil {
			return fmt.Errorf("rates export: %s", describe(err))
		}
		if file == "" {
			return rating.WriteCSV(stdout, rates)
		}
		f, err := os.Create(file)
		if err != nil {
			return fmt.Errorf("rates export: %w", err)
		}
		if err := rating.WriteCSV(f, rates); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("rates export: %w", err)
		}
		fmt.Fprintf(stderr, "exported %d rates to %s\n", len(rates), file)
		return nil
	}

	// import
	if file == "" {
		return usageError{fmt.Errorf("rates import: --file is required")}
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("rates import: %w", err)
	}
	defer f.Close()
	rates, err := rating.ParseCSV(f)
	if err != nil {
		return fmt.Errorf("rates import: %s: nothing imported: %w", file, err)
	}
	info, err := decks.ImportRates(ctx, id, rating.SliceRates(rates), replace)
	if err != nil {
		return fmt.Errorf("rates import: %s", describe(err))
	}
	how := "added to"
	if replace {
		how = "replaced the rates of"
	}
	fmt.Fprintf(stdout, "%d rates %s deck %s (version %d)\n", len(rates), how, info.ID, info.Version)
	return nil
}

// describe renders a domain error with its field for an operator.
func describe(err error) string {
	if f := callbridge.ErrorField(err); f != "" {
		return f + ": " + callbridge.ErrorMessage(err)
	}
	if callbridge.ErrorCode(err) == callbridge.EINTERNAL {
		return err.Error()
	}
	return callbridge.ErrorMessage(err)
}

// pickDeck returns --deck, or the deck of --account in force now.
func pickDeck(ctx context.Context, store *postgres.RateDeckService, deckID, accountID string) (string, error) {
	switch {
	case deckID != "" && accountID != "":
		return "", usageError{fmt.Errorf("rates: give --deck or --account, not both")}
	case deckID != "":
		return deckID, nil
	case accountID == "":
		return "", usageError{fmt.Errorf("rates: --deck or --account is required")}
	}
	decks, err := store.RateDecks(ctx, accountID)
	if err != nil {
		return "", err
	}
	now := time.Now()
	var best *rating.DeckInfo
	for _, d := range decks {
		if !d.EffectiveFrom.After(now) && (best == nil || d.EffectiveFrom.After(best.EffectiveFrom)) {
			best = d
		}
	}
	if best == nil {
		return "", fmt.Errorf("rates: account %s has no deck in force", accountID)
	}
	return best.ID, nil
}

func listDecks(ctx context.Context, store *postgres.RateDeckService, accountID string, stdout io.Writer) error {
	decks, err := store.RateDecks(ctx, accountID)
	if err != nil {
		return fmt.Errorf("rates decks: %s", describe(err))
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tOWNER\tNAME\tCURRENCY\tTIME ZONE\tPRECISION\tROUNDING\tEFFECTIVE FROM\tVERSION")
	for _, d := range decks {
		owner := "account:" + d.AccountID
		if d.Gateway != "" {
			owner = "gateway:" + d.Gateway
		}
		eff := "always"
		if !d.EffectiveFrom.IsZero() {
			eff = d.EffectiveFrom.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%d\n", d.ID, owner, d.Name, d.Currency, d.TimeZone, d.Precision, d.Rounding, eff, d.Version)
	}
	return tw.Flush()
}
