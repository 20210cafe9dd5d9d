package postgres_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/postgres"
	"callbridge/rating"
	"callbridge/routing"
)

func importCSV(t *testing.T, db *postgres.DB, planID, csv string, replace bool) (*routing.PlanInfo, error) {
	t.Helper()
	return postgres.NewRoutePlanService(db).ImportRoutes(context.Background(), planID, routing.NewRouteReader(strings.NewReader(csv)), replace)
}

func TestRoutePlans(t *testing.T) {
	db, account := newDeckFixture(t)
	ctx := context.Background()

	def := &routing.PlanInfo{Name: "default", Default: true, TimeZone: "Europe/Berlin", Currency: "EUR"}
	if err := postgres.NewRoutePlanService(db).CreateRoutePlan(ctx, def); err != nil {
		t.Fatal(err)
	}
	if def.ID == "" || def.Version != 1 || def.CreatedAt.IsZero() || def.MaxAttempts != routing.DefaultMaxAttempts || def.PostDialMS != routing.DefaultPostDialMS {
		t.Fatalf("got %+v, want id, version 1, created_at and the defaults", def)
	}
	own := &routing.PlanInfo{Name: "shop", AccountID: account, TimeZone: "UTC", Currency: "USD", MaxAttempts: 2, PostDialMS: 20_000,
		FailoverCauses: []string{"GATEWAY_DOWN"}, FailoverSIPCodes: []int{503, 502}}
	if err := postgres.NewRoutePlanService(db).CreateRoutePlan(ctx, own); err != nil {
		t.Fatal(err)
	}
	staged := &routing.PlanInfo{Name: "next", TimeZone: "UTC", Currency: "EUR"}
	if err := postgres.NewRoutePlanService(db).CreateRoutePlan(ctx, staged); err != nil {
		t.Fatal(err)
	}

	for name, tt := range map[string]struct {
		p    routing.PlanInfo
		code string
		want string
	}{
		"second default":          {routing.PlanInfo{Name: "x", Default: true, TimeZone: "UTC", Currency: "EUR"}, callbridge.ECONFLICT, ""},
		"second account plan":     {routing.PlanInfo{Name: "x", AccountID: account, TimeZone: "UTC", Currency: "EUR"}, callbridge.ECONFLICT, ""},
		"unknown zone":            {routing.PlanInfo{Name: "x", TimeZone: "Mars/Olympus", Currency: "EUR"}, callbridge.EINVALID, "time_zone"},
		"unknown account":         {routing.PlanInfo{Name: "x", AccountID: "7d0c1f0e-1111-4222-8333-444455556666", TimeZone: "UTC", Currency: "EUR"}, callbridge.EINVALID, "account_id"},
		"not an account id":       {routing.PlanInfo{Name: "x", AccountID: "42", TimeZone: "UTC", Currency: "EUR"}, callbridge.EINVALID, "account_id"},
		"callee cause":            {routing.PlanInfo{Name: "x", TimeZone: "UTC", Currency: "EUR", FailoverCauses: []string{"USER_BUSY"}}, callbridge.EINVALID, "failover_causes"},
		"default with an account": {routing.PlanInfo{Name: "x", AccountID: account, Default: true, TimeZone: "UTC", Currency: "EUR"}, callbridge.EINVALID, "default"},
	} {
		t.Run(name, func(t *testing.T) {
			err := postgres.NewRoutePlanService(db).CreateRoutePlan(ctx, &tt.p)
			if callbridge.ErrorCode(err) != tt.code || callbridge.ErrorField(err) != tt.want {
				t.Errorf("got %v, want %s naming %q", err, tt.code, tt.want)
			}
		})
	}

	got, err := postgres.NewRoutePlanService(db).RoutePlan(ctx, own.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccountID != account || got.MaxAttempts != 2 || got.PostDialMS != 20_000 || got.Currency != "USD" ||
		strings.Join(got.FailoverCauses, ",") != "GATEWAY_DOWN" || len(got.FailoverSIPCodes) != 2 || got.FailoverSIPCodes[1] != 502 {
		t.Errorf("got %+v", got)
	}
	list, err := postgres.NewRoutePlanService(db).RoutePlans(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != def.ID || list[1].ID != staged.ID || list[2].ID != own.ID {
		t.Errorf("list: got %d plans, want default, staged, account's", len(list))
	}

	for name, tt := range map[string]struct{ account, want string }{
		"an account's own plan":    {account, own.ID},
		"the default for another":  {"7d0c1f0e-1111-4222-8333-444455556666", def.ID},
		"the default when asked":   {"", def.ID},
		"the default for a bad id": {"x';--", def.ID},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := postgres.NewRoutePlanService(db).LoadPlanFor(ctx, tt.account)
			if err != nil || p.Info().ID != tt.want {
				t.Errorf("got %v, %v; want %s", p, err, tt.want)
			}
		})
	}

	if err := postgres.NewRoutePlanService(db).DeleteRoutePlan(ctx, def.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{def.ID, "nope"} {
		if err := postgres.NewRoutePlanService(db).DeleteRoutePlan(ctx, id); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
			t.Errorf("delete %s: got %v, want ENOTFOUND", id, err)
		}
		if _, err := postgres.NewRoutePlanService(db).RoutePlan(ctx, id); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
			t.Errorf("get %s: got %v, want ENOTFOUND", id, err)
		}
	}
	if _, err := postgres.NewRoutePlanService(db).LoadPlanFor(ctx, ""); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("no default plan: got %v, want ENOTFOUND", err)
	}
}

func TestImportRoutes(t *testing.T) {
	db := newRouteDB(t)
	ctx := context.Background()
	p := &routing.PlanInfo{Name: "lcr", Default: true, TimeZone: "Europe/Berlin", Currency: "EUR"}
	if err := postgres.NewRoutePlanService(db).CreateRoutePlan(ctx, p); err != nil {
		t.Fatal(err)
	}
	file := "prefix,strategy,gateways,days,from,until,priority,description\n" +
		"49,least_cost,carrier-a;carrier-b,,,,,Germany\n" +
		"4930,weighted,carrier-a:70;carrier-b:30,mon-fri,08:00,18:00,0,Berlin peak\n" +
		"4930,priority,carrier-b;carrier-a,,,,1,Berlin\n" +
		",priority,fallback,,,,,everything else\n"
	info, err := importCSV(t, db, p.ID, file, false)
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != 2 {
		t.Errorf("version: got %d, want 2", info.Version)
	}

	var out bytes.Buffer
	w := routing.NewCSVWriter(&out)
	if err := postgres.NewRoutePlanService(db).EachRoute(ctx, p.ID, w.Write); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	want := "prefix,description,strategy,gateways,days,from,until,priority\n" +
		",everything else,priority,fallback,all,00:00,24:00,0\n" +
		"49,Germany,least_cost,carrier-a;carrier-b,all,00:00,24:00,0\n" +
		"4930,Berlin peak,weighted,carrier-a:70;carrier-b:30,mon-fri,08:00,18:00,0\n" +
		"4930,Berlin,priority,carrier-b;carrier-a,all,00:00,24:00,1\n"
	if out.String() != want {
		t.Errorf("export:\ngot\n%s\nwant\n%s", out.String(), want)
	}

	t.Run("bad and repeated rows refuse the whole file", func(t *testing.T) {
		bad := "prefix,strategy,gateways\n" +
			"33,priority,a\n" + // 2
			"3x,priority,a\n" + // 3: prefix
			"33,priority,b\n" + // 4: repeats line 2
			"34,priority,a;a\n" // 5: gateways
		_, err := importCSV(t, db, p.ID, bad, false)
		var ce *rating.CSVError
		if !errors.As(err, &ce) {
			t.Fatalf("got %v, want a *rating.CSVError", err)
		}
		if len(ce.Rows) != 3 || ce.Rows[0].Line != 3 || ce.Rows[0].Column != "prefix" ||
			ce.Rows[1].Line != 4 || !strings.Contains(ce.Rows[1].Message, "duplicates line 2") ||
			ce.Rows[2].Line != 5 || ce.Rows[2].Column != "gateways" {
			t.Errorf("got %+v", ce.Rows)
		}
		if p2, _ := postgres.NewRoutePlanService(db).RoutePlan(ctx, p.ID); p2.Version != 2 {
			t.Errorf("a refused import changed the version to %d", p2.Version)
		}
	})
	t.Run("a row the plan has already conflicts", func(t *testing.T) {
		_, err := importCSV(t, db, p.ID, "prefix,strategy,gateways\n49,priority,x\n", false)
		if callbridge.ErrorCode(err) != callbridge.ECONFLICT {
			t.Errorf("got %v, want ECONFLICT", err)
		}
	})
	t.Run("unknown plan", func(t *testing.T) {
		for _, id := range []string{"nope", "7d0c1f0e-1111-4222-8333-444455556666"} {
			if _, err := importCSV(t, db, id, "prefix,strategy,gateways\n49,priority,x\n", false); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
				t.Errorf("%s: got %v, want ENOTFOUND", id, err)
			}
		}
		if err := postgres.NewRoutePlanService(db).EachRoute(ctx, "nope", func(*routing.Route) error { return nil }); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
			t.Errorf("export: got %v, want ENOTFOUND", err)
		}
	})
	t.Run("replace, then load and resolve", func(t *testing.T) {
		if _, err := importCSV(t, db, p.ID, "prefix,strategy,gateways\n49,priority,carrier-c;carrier-a\n", true); err != nil {
			t.Fatal(err)
		}
		plan, err := postgres.NewRoutePlanService(db).LoadPlanFor(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if plan.Len() != 1 || plan.Info().Version != 3 || plan.Info().ID != p.ID {
			t.Errorf("got %s, want 1 route at version 3", plan)
		}
		var res routing.Resolution
		plan.Resolve(&res, "4930123", time.Now(), routing.Sources{})
		if a := res.Attempts(); len(a) != 2 || a[0].Gateway != "carrier-c" || a[1].Gateway != "carrier-a" {
			t.Errorf("got %+v", a)
		}
		if _, err := postgres.NewRoutePlanService(db).LoadPlan(ctx, "nope"); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
			t.Errorf("load unknown: got %v, want ENOTFOUND", err)
		}
	})
	t.Run("a failing reader is returned, nothing stored", func(t *testing.T) {
		src := routing.NewRouteReader(&failingReader{data: "prefix,strategy,gateways\n44,priority,a\n"})
		if _, err := postgres.NewRoutePlanService(db).ImportRoutes(ctx, p.ID, src, false); !errors.Is(err, errBoom) {
			t.Errorf("got %v, want the read error", err)
		}
		plan, err := postgres.NewRoutePlanService(db).LoadPlan(ctx, p.ID)
		if err != nil || plan.Len() != 1 {
			t.Errorf("got %v, %v; want the plan unchanged", plan, err)
		}
	})
}

func newRouteDB(t *testing.T) *postgres.DB {
	db, _ := newDeckFixture(t)
	return db
}

var errBoom = errors.New("boom")

// failingReader yields data, then fails.
type failingReader struct {
	data string
	done bool
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.done {
		return 0, errBoom
	}
	r.done = true
	return copy(p, r.data), nil
}
