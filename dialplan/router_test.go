package dialplan

import (
	"strings"
	"testing"

	"callbridge"
)

// TestRouterVariable: Options.Router names the controller in every leg's
// shared dial-string variables; without it the document is unchanged;
// an unsafe name is refused rather than rendered.
func TestRouterVariable(t *testing.T) {
	req := &Request{Destination: testX, DestinationRaw: testX, Caller: testA, Context: "public", UniqueID: testBinding}
	d := Decide(req, line(binding(callbridge.ModeAXB, testA, testB)), testNow).Failover([]string{"cheap", "dear"}, carrierCauses)
	out, err := Render(nil, req, d, &Options{Router: "host-1/:8080/0a1b2c"})
	if err != nil {
		t.Fatal(err)
	}
	checkDocument(t, out)
	if want := ",callbridge_router=host-1/:8080/0a1b2c,"; !strings.Contains(string(out), want) {
		t.Errorf("document lacks %s:\n%s", want, out)
	}
	plain, err := Render(nil, req, d, &Options{})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(plain), callbridge.VarRouter) {
		t.Errorf("document without Options.Router names a router:\n%s", plain)
	}
	for _, bad := range []string{"a,b", "a]b", "a}b", "a'b", `a"b`, "a<b", "a b", "a=b", "a$b", strings.Repeat("a", 129)} {
		if _, err := Render(nil, req, d, &Options{Router: bad}); err == nil {
			t.Errorf("router %q rendered", bad)
		}
	}
	for name, want := range map[string]string{
		"":                       "callbridge",
		"host/[::]:8080/0a1b2c":  "host______8080_0a1b2c",
		"h\u00e9,x/0a":           "h___x_0a",
		"test-2/0a1b.c_d":        "test-2_0a1b.c_d",
		strings.Repeat("a", 130): strings.Repeat("a", 128),
	} {
		got := callbridge.RouterName(name)
		if got != want || callbridge.ValidateRouter(got) != nil {
			t.Errorf("RouterName(%q) = %q, want %q (valid)", name, got, want)
		}
	}
}
