package postgres_test

import (
	"context"
	"testing"

	"callbridge"
)

func TestNumbers(t *testing.T) {
	f := newBindingFixture(t)
	ctx := context.Background()
	ns, err := f.numbers.CreateNumbers(ctx, f.account, []*callbridge.VirtualNumber{
		{Number: x1, Gateway: "carrier-a", Area: "berlin", Labels: []string{"shop"}, Enabled: true},
		{Number: x2, Gateway: "carrier-a", Area: "hamburg", Enabled: true},
		{Number: x3, Gateway: "carrier-b", Area: "berlin", Enabled: false},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(ns) != 3 || ns[0].Labels[0] != "shop" || ns[1].Labels == nil {
		t.Fatalf("got %+v", ns)
	}
	if _, err := f.numbers.CreateNumbers(ctx, f.account, []*callbridge.VirtualNumber{{Number: x1, Gateway: "g"}}); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("duplicate number: got %v, want conflict", err)
	}
	if _, err := f.numbers.CreateNumbers(ctx, f.account, []*callbridge.VirtualNumber{{Number: "4930100009", Gateway: "bad gw"}}); callbridge.ErrorField(err) != "gateway" {
		t.Errorf("bad gateway: got %v, want a gateway error", err)
	}

	page, next, err := f.numbers.Numbers(ctx, f.account, callbridge.NumberFilter{Limit: 2})
	if err != nil || len(page) != 2 || next == "" {
		t.Fatalf("page 1: %v %q %v", page, next, err)
	}
	page2, next2, err := f.numbers.Numbers(ctx, f.account, callbridge.NumberFilter{Limit: 2, Cursor: next})
	if err != nil || len(page2) != 1 || page2[0].Number != x3 || next2 != "" {
		t.Fatalf("page 2: %v %q %v", page2, next2, err)
	}
	yes := true
	berlin, _, err := f.numbers.Numbers(ctx, f.account, callbridge.NumberFilter{Area: "berlin", Enabled: &yes})
	if err != nil || len(berlin) != 1 || berlin[0].Number != x1 {
		t.Errorf("filter: got %v, %v", berlin, err)
	}

	gw := "carrier-b"
	no := false
	u, err := f.numbers.UpdateNumber(ctx, f.account, x2, callbridge.NumberUpdate{Gateway: &gw, Enabled: &no})
	if err != nil || u.Gateway != gw || u.Enabled {
		t.Errorf("update: got %+v, %v", u, err)
	}
	// A disabled number is neither allocated nor bindable by name.
	if _, err := f.bind(t, callbridge.ModeXB, x2, "", pa); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("bind disabled: got %v, want conflict", err)
	}

	b, err := f.bind(t, callbridge.ModeXB, x1, "", pa)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.numbers.DeleteNumber(ctx, f.account, x1); callbridge.ErrorCode(err) != callbridge.ECONFLICT {
		t.Errorf("delete bound number: got %v, want conflict", err)
	}
	if _, err := f.bindings.Unbind(ctx, f.account, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.numbers.DeleteNumber(ctx, f.account, x1); err != nil {
		t.Errorf("delete unbound number: %v", err)
	}
	if _, err := f.numbers.Number(ctx, f.account, x1); callbridge.ErrorCode(err) != callbridge.ENOTFOUND {
		t.Errorf("got %v, want not found after delete", err)
	}
	// The binding stays as history.
	if _, err := f.bindings.Binding(ctx, f.account, b.ID); err != nil {
		t.Errorf("binding after number delete: %v", err)
	}
}
