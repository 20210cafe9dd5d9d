// Package pricing is the HTTP API of what a call costs and which carrier
// takes it: rate decks and their CSV rates, price quotes, and the
// operator's carrier route plans (least-cost routing priced from the
// decks). Its handlers are registered in controller's routes.go; it does
// not price or route calls itself (rating and routing do) and speaks no
// SQL (the stores are given to it).
package pricing

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"callbridge"
	"callbridge/controller/internal/handler"
	"callbridge/rating"

	"github.com/gin-gonic/gin"
)

// RateDeckStore is what the rating routes need of the database.
type RateDeckStore interface {
	// CreateRateDeck stores a deck and fills in its ID, Version and
	// CreatedAt. EINVALID, ECONFLICT.
	CreateRateDeck(ctx context.Context, d *rating.DeckInfo) error
	// RateDecks lists an account's decks, or every carrier deck for "".
	RateDecks(ctx context.Context, accountID string) ([]*rating.DeckInfo, error)
	// RateDeck returns a deck. ENOTFOUND.
	RateDeck(ctx context.Context, id string) (*rating.DeckInfo, error)
	// ImportRates stores the rates of src all or none, replacing the
	// deck's rates when replace is set, reading src as it goes (memory
	// does not grow with the file). EINVALID (a *rating.CSVError for bad
	// rows), ENOTFOUND, ECONFLICT; a failure to read src is returned
	// wrapped.
	ImportRates(ctx context.Context, deckID string, src rating.RateSource, replace bool) (*rating.DeckInfo, error)
	// Rates returns a deck's rates. ENOTFOUND.
	Rates(ctx context.Context, deckID string) ([]rating.Rate, error)
}

// DeckRefresher reloads one deck into the process's registry
// (postgres.DeckSync).
type DeckRefresher interface {
	// Refresh reads deck id again, or drops it when it no longer exists.
	Refresh(ctx context.Context, id string) error
}

// RefreshingDecks reloads a deck into this controller's registry as soon
// as it is written through this controller's API, so a quote or a call
// right after the answer is priced by the new deck. Other controllers
// learn of the write by LISTEN/NOTIFY a few milliseconds later; should the
// reload fail, this one does too.
type RefreshingDecks struct {
	RateDeckStore
	Sync DeckRefresher
	Log  *slog.Logger
}

func (r RefreshingDecks) refresh(ctx context.Context, id string) {
	if err := r.Sync.Refresh(ctx, id); err != nil {
		r.Log.Warn("rate deck reload failed; waiting for NOTIFY", "deck", id, "error", err)
	}
}

func (r RefreshingDecks) CreateRateDeck(ctx context.Context, d *rating.DeckInfo) error {
	err := r.RateDeckStore.CreateRateDeck(ctx, d)
	if err == nil {
		r.refresh(ctx, d.ID)
	}
	return err
}

func (r RefreshingDecks) ImportRates(ctx context.Context, deckID string, rates rating.RateSource, replace bool) (*rating.DeckInfo, error) {
	info, err := r.RateDeckStore.ImportRates(ctx, deckID, rates, replace)
	if err == nil {
		r.refresh(ctx, deckID)
	}
	return info, err
}

// deckFor returns deck id if the caller may see it: the admin sees every
// deck, an account only its own (others are not found).
func deckFor(c *gin.Context, decks RateDeckStore, id string) (*rating.DeckInfo, error) {
	d, err := decks.RateDeck(c.Request.Context(), id)
	if err != nil {
		return nil, err
	}
	if !handler.IsAdmin(c) && d.AccountID != handler.Account(c).ID {
		return nil, callbridge.Errorf(callbridge.ENOTFOUND, "rate deck not found")
	}
	return d, nil
}

// CreateRateDeck answers POST /v1/rate-decks with a rating.DeckInfo
// body. An account creates decks for itself only; the admin names the
// account_id or, for a carrier deck, the gateway.
func CreateRateDeck(decks RateDeckStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		var in struct {
			AccountID     string       `json:"account_id"`
			Gateway       string       `json:"gateway"`
			Name          string       `json:"name"`
			Currency      string       `json:"currency"`
			TimeZone      string       `json:"time_zone"`
			Precision     *int         `json:"precision"`
			Rounding      string       `json:"rounding"`
			ShortMS       int64        `json:"short_ms"`
			Default       *rating.Rate `json:"default_rate"`
			Holidays      []string     `json:"holidays"`
			EffectiveFrom time.Time    `json:"effective_from"`
		}
		if err := handler.DecodeJSON(c, &in); err != nil {
			handler.WriteError(c, err)
			return
		}
		d := &rating.DeckInfo{
			AccountID: in.AccountID, Gateway: in.Gateway, Name: in.Name, Currency: in.Currency,
			TimeZone: in.TimeZone, Precision: 6, Rounding: rating.Rounding(in.Rounding), ShortMS: in.ShortMS,
			Default: in.Default, Holidays: in.Holidays, EffectiveFrom: in.EffectiveFrom,
		}
		if in.Precision != nil {
			d.Precision = *in.Precision
		}
		if !handler.IsAdmin(c) {
			if in.Gateway != "" {
				handler.WriteError(c, callbridge.Errorf(callbridge.EFORBIDDEN, "carrier decks are the operator's"))
				return
			}
			if in.AccountID != "" && in.AccountID != handler.Account(c).ID {
				handler.WriteError(c, callbridge.FieldError("account_id", "must be your own account or left out"))
				return
			}
			d.AccountID = handler.Account(c).ID
		}
		if err := decks.CreateRateDeck(c.Request.Context(), d); err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusCreated, d)
	}
}

// ListRateDecks answers GET /v1/rate-decks: the account's decks; for the
// admin, the carrier decks or, with ?account_id=, an account's.
func ListRateDecks(decks RateDeckStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		owner := c.Query("account_id")
		if !handler.IsAdmin(c) {
			owner = handler.Account(c).ID
		}
		list, err := decks.RateDecks(c.Request.Context(), owner)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, gin.H{"rate_decks": list})
	}
}

// GetRateDeck answers GET /v1/rate-decks/{id}.
func GetRateDeck(decks RateDeckStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		d, err := deckFor(c, decks, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		c.JSON(http.StatusOK, d)
	}
}

// csvErrorJSON is the answer to a refused CSV file: the usual error body
// with every bad row.
type csvErrorJSON struct {
	Error struct {
		Code    string            `json:"code"`
		Message string            `json:"message"`
		Rows    []rating.RowError `json:"rows"`
	} `json:"error"`
}

// CSVImportRoute is the route whose body may be as large as
// Server.MaxCSVBytes.
const CSVImportRoute = "/v1/rate-decks/:id/rates"

// ImportRates answers POST /v1/rate-decks/{id}/rates with a text/csv
// body in rating.Columns' format; ?mode=append (the default) adds the
// rows, ?mode=replace replaces every rate of the deck. A bad file is
// refused whole (400) with its bad rows. The body is streamed into the
// database, so an import holds a constant amount of memory whatever the
// file's size; slots bounds how many run at once (429 beyond).
func ImportRates(decks RateDeckStore, slots *ImportSlots) gin.HandlerFunc {
	return func(c *gin.Context) {
		replace, ok := importMode(c)
		if !ok {
			return
		}
		d, err := deckFor(c, decks, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		who := handler.AdminOwner
		if !handler.IsAdmin(c) {
			who = handler.Account(c).ID
		}
		release, err := slots.acquire(who)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		defer release()
		src := &countingSource{RateSource: rating.NewRateReader(c.Request.Body)}
		info, err := decks.ImportRates(c.Request.Context(), d.ID, src, replace)
		if writeImportError(c, err) {
			return
		}
		c.JSON(http.StatusOK, gin.H{"rate_deck": info, "imported": src.n, "replaced": replace})
	}
}

// importMode reads an import's ?mode= (append, the default, or replace:
// it returns true for replace) and checks that the body is text/csv. It
// answers 400 and returns false when either is wrong.
func importMode(c *gin.Context) (replace, ok bool) {
	switch c.DefaultQuery("mode", "append") {
	case "append":
	case "replace":
		replace = true
	default:
		handler.WriteError(c, callbridge.FieldError("mode", "must be append or replace"))
		return false, false
	}
	if ct := c.ContentType(); ct != "text/csv" {
		handler.WriteError(c, callbridge.Errorf(callbridge.EINVALID, "Content-Type must be text/csv"))
		return false, false
	}
	return replace, true
}

// countingSource counts the rates read from a source.
type countingSource struct {
	rating.RateSource
	n int
}

func (s *countingSource) Next() bool {
	ok := s.RateSource.Next()
	if ok {
		s.n++
	}
	return ok
}

// importRetryAfter is the Retry-After of an import refused for want of
// a slot: an import of a large deck takes seconds.
const importRetryAfter = 5

// ImportSlots bounds concurrent rate imports: at most perOwner at a time
// for one account (or the admin), at most total in the process. Each
// import holds a database transaction and a COPY stream, so the bound
// keeps a burst of uploads from taking every connection.
type ImportSlots struct {
	perOwner, total int

	mu      sync.Mutex
	running map[string]int
	n       int
}

func NewImportSlots(perOwner, total int) *ImportSlots {
	return &ImportSlots{perOwner: max(perOwner, 1), total: max(total, 1), running: map[string]int{}}
}

// acquire takes a slot for owner, or answers ERATELIMIT with a
// Retry-After when owner or the process has none free.
func (s *ImportSlots) acquire(owner string) (release func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.running[owner] >= s.perOwner:
		err = callbridge.Errorf(callbridge.ERATELIMIT, "%d rate import(s) already running for this account; retry in %d s", s.perOwner, importRetryAfter)
	case s.n >= s.total:
		err = callbridge.Errorf(callbridge.ERATELIMIT, "the server is running %d rate imports; retry in %d s", s.total, importRetryAfter)
	}
	if err != nil {
		return nil, &callbridge.RetryAfter{Seconds: importRetryAfter, Err: err}
	}
	s.running[owner]++
	s.n++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.n--
			if s.running[owner]--; s.running[owner] == 0 {
				delete(s.running, owner)
			}
		})
	}, nil
}

// ExportRates answers GET /v1/rate-decks/{id}/rates: CSV when the client
// accepts text/csv, else JSON.
func ExportRates(decks RateDeckStore) gin.HandlerFunc {
	return func(c *gin.Context) {
		d, err := deckFor(c, decks, c.Param("id"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		rates, err := decks.Rates(c.Request.Context(), d.ID)
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		if strings.Contains(c.GetHeader("Accept"), "text/csv") {
			c.Header("Content-Type", "text/csv; charset=utf-8")
			c.Header("Content-Disposition", `attachment; filename="rates-`+d.ID+`.csv"`)
			c.Status(http.StatusOK)
			if err := rating.WriteCSV(c.Writer, rates); err != nil {
				c.Error(err) // the client went away mid-body; logged
			}
			return
		}
		c.JSON(http.StatusOK, gin.H{"rate_deck": d, "rates": rates})
	}
}

// appendQuote appends the answer of GET /v1/rates/quote: the deck, the
// number, the time, the amount and the rating.Result. A quote is written
// without reflection: on a hot path the encoding costs more than the
// pricing.
func appendQuote(b []byte, info *rating.DeckInfo, number callbridge.Number, at time.Time, r *rating.Result) []byte {
	b = append(b, `{"deck_id":`...)
	b = rating.AppendJSONString(b, info.ID)
	b = append(b, `,"deck_version":`...)
	b = strconv.AppendInt(b, info.Version, 10)
	b = append(b, `,"number":`...)
	b = rating.AppendJSONString(b, number.String())
	b = append(b, `,"at":"`...)
	b = at.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","amount":"`...)
	b = append(b, rating.FormatMoney(r.Amount)...)
	b = append(b, `","result":`...)
	b = r.AppendJSON(b)
	return append(b, '}')
}

// Quote answers GET /v1/rates/quote?number=&at=&duration=[&deck=]: what a
// call would cost under the account's deck in force at `at` (default now),
// or under deck `deck` (the admin must name one). duration is whole
// seconds ("90", as every other duration in the API) or Go syntax for
// finer ones ("90s", "1m30.5s", "1500ms"); default one minute. Decks come
// from the process's registry: a quote does no I/O.
func Quote(decks *rating.Registry) gin.HandlerFunc {
	return func(c *gin.Context) {
		number, at, ok := numberAt(c)
		if !ok {
			return
		}
		ms, err := parseDurationMS(c.DefaultQuery("duration", "60"))
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		var deck *rating.Deck
		switch id := c.Query("deck"); {
		case id != "":
			// Another account's deck is as unknown as a missing one.
			if deck = decks.Held(id); deck != nil && !handler.IsAdmin(c) && deck.Info().AccountID != handler.Account(c).ID {
				deck = nil
			}
			err = quotable(deck)
		case handler.IsAdmin(c):
			err = callbridge.FieldError("deck", "the admin must name a deck")
		default:
			deck = decks.AccountDeckHeld(handler.Account(c).ID, at)
			err = quotable(deck)
		}
		if err != nil {
			handler.WriteError(c, err)
			return
		}
		r := deck.Price(rating.Usage{Number: number, Start: at, BillMS: ms})
		info := deck.Info()
		c.Data(http.StatusOK, "application/json; charset=utf-8", appendQuote(make([]byte, 0, 1024), &info, number, at, &r))
	}
}

// quotable says why deck (as the registry holds it, refused or not)
// cannot price a quote, or nil when it can: 404 when there is no deck,
// 409 when the deck was refused (over CALLBRIDGE_MAX_DECK_RATES), which
// leaves the calls it would price unrated.
func quotable(deck *rating.Deck) error {
	switch {
	case deck == nil:
		return callbridge.Errorf(callbridge.ENOTFOUND, "rate deck not found")
	case deck.Refused() != "":
		return callbridge.Errorf(callbridge.ECONFLICT, "rate deck %s is not loaded: %s; the calls it would price are unrated until it is cut down", deck.Info().ID, deck.Refused())
	}
	return nil
}

// numberAt reads the number and at (an RFC 3339 time, default now) query
// parameters of a quote or a route resolution, in UTC. It answers 400 and
// returns false when one is bad.
func numberAt(c *gin.Context) (callbridge.Number, time.Time, bool) {
	number, err := callbridge.ParseNumber(c.Query("number"))
	if err != nil {
		handler.WriteError(c, callbridge.FieldError("number", "%s", callbridge.ErrorMessage(err)))
		return number, time.Time{}, false
	}
	at := time.Now().UTC()
	if s := c.Query("at"); s != "" {
		if at, err = time.Parse(time.RFC3339Nano, s); err != nil {
			handler.WriteError(c, callbridge.FieldError("at", "must be an RFC 3339 time"))
			return number, time.Time{}, false
		}
		at = at.UTC()
	}
	return number, at, true
}

// parseDurationMS reads a quote's duration: whole seconds or Go syntax.
func parseDurationMS(s string) (int64, error) {
	const max = 7 * 24 * time.Hour
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > int64(max/time.Second) {
			return 0, callbridge.FieldError("duration", "must be 0 to 7 days")
		}
		return n * 1000, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 || d > max {
		return 0, callbridge.FieldError("duration", "must be seconds or a duration such as 90s, 0 to 7 days")
	}
	return d.Milliseconds(), nil
}
