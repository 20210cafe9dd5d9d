package controller

import (
	"context"
	"encoding/xml"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"callbridge"
	"callbridge/dialplan"
	"callbridge/privacy"

	"github.com/gin-gonic/gin"
)

const (
	dpUser = "freeswitch"
	dpPass = "s3cret-dialplan"
	tX     = callbridge.Number("4930100100")
	tA     = callbridge.Number("4917011111")
	tB     = callbridge.Number("4917022222")
	tC     = callbridge.Number("4917033333")
	tAcct  = "8b1c3a5e-2f7d-4c11-9d0e-5a6b7c8d9e0f"
	tBind  = "0f1e2d3c-4b5a-4697-8877-665544332211"
)

// staticLines is a privacy.LineLookup over fixed lines.
type staticLines map[callbridge.Number]*dialplan.Line

func (s staticLines) Line(_ context.Context, x callbridge.Number) (*dialplan.Line, error) {
	return s[x], nil
}

// dialplanServer serves only POST /fs/dialplan, plus a v1 group guarded
// by an API key check, to show the key does not open the endpoint.
func dialplanServer(t testing.TB, lines privacy.LineLookup, allowed []netip.Prefix) *httptest.Server {
	t.Helper()
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(limitBody(1<<20, nil))
	p := &PrivacyNumbers{
		Lines:    lines,
		Dialplan: DialplanConfig{User: dpUser, Password: dpPass, AllowedSources: allowed},
		Logger:   slog.New(slog.DiscardHandler),
	}
	e.POST("/fs/dialplan", fsDialplan(&p.Dialplan, p.Lines, time.Now, p.Logger))
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func fixtureBody(t testing.TB, dest, caller string) string {
	t.Helper()
	raw, err := os.ReadFile("../dialplan/testdata/xml-curl-dialplan-request.txt")
	if err != nil {
		t.Fatal(err)
	}
	form, err := url.ParseQuery(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	form.Set("Hunt-Destination-Number", dest)
	form.Set("Caller-Destination-Number", dest)
	form.Set("Hunt-Caller-ID-Number", caller)
	form.Set("Caller-Caller-ID-Number", caller)
	return form.Encode()
}

func postDialplan(t testing.TB, srv *httptest.Server, body string, auth func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/fs/dialplan", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != nil {
		auth(req)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func basic(req *http.Request) { req.SetBasicAuth(dpUser, dpPass) }

func testLines() staticLines {
	return staticLines{tX: {X: tX, AccountID: tAcct, Gateway: "carrier-1", Enabled: true, Bindings: []*callbridge.Binding{{
		ID: tBind, AccountID: tAcct, Mode: callbridge.ModeAXB, X: tX, A: tA, B: tB,
		Status: callbridge.StatusActive, ExpiresAt: time.Now().Add(time.Hour), CallerDisplay: callbridge.DisplayX,
	}}}}
}

func TestFSDialplanAuth(t *testing.T) {
	srv := dialplanServer(t, testLines(), nil)
	body := fixtureBody(t, string(tX), string(tA))
	tests := []struct {
		name string
		auth func(*http.Request)
		want int
	}{
		{"no credentials", nil, http.StatusUnauthorized},
		{"wrong password", func(r *http.Request) { r.SetBasicAuth(dpUser, "nope") }, http.StatusUnauthorized},
		{"wrong user", func(r *http.Request) { r.SetBasicAuth("admin", dpPass) }, http.StatusUnauthorized},
		{"api key", func(r *http.Request) { r.Header.Set("Authorization", "Bearer cbk_abcdef") }, http.StatusUnauthorized},
		{"right credentials", basic, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, out := postDialplan(t, srv, body, tt.auth)
			if got != tt.want {
				t.Errorf("got %d, want %d", got, tt.want)
			}
			if got != http.StatusOK && strings.Contains(out, "<document") {
				t.Errorf("refused request got a document: %s", out)
			}
		})
	}
	t.Run("source not allowed", func(t *testing.T) {
		srv := dialplanServer(t, testLines(), []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")})
		if got, _ := postDialplan(t, srv, body, basic); got != http.StatusForbidden {
			t.Errorf("got %d, want 403", got)
		}
	})
	t.Run("source allowed", func(t *testing.T) {
		srv := dialplanServer(t, testLines(), []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
		if got, _ := postDialplan(t, srv, body, basic); got != http.StatusOK {
			t.Errorf("got %d, want 200", got)
		}
	})
}

// dpDoc is the part of a dialplan document the tests read.
type dpDoc struct {
	Section struct {
		Name    string `xml:"name,attr"`
		Context struct {
			Actions []struct {
				App  string `xml:"application,attr"`
				Data string `xml:"data,attr"`
			} `xml:"extension>condition>action"`
		} `xml:"context"`
		Result *struct {
			Status string `xml:"status,attr"`
		} `xml:"result"`
	} `xml:"section"`
}

func parseDoc(t testing.TB, out string) dpDoc {
	t.Helper()
	var d dpDoc
	if err := xml.Unmarshal([]byte(out), &d); err != nil {
		t.Fatalf("answer is not well-formed XML: %v\n%s", err, out)
	}
	return d
}

func TestFSDialplanAnswers(t *testing.T) {
	srv := dialplanServer(t, testLines(), nil)
	tests := []struct {
		name string
		body string
		want string // last application and data, or "not found"
	}{
		{"a calls x", fixtureBody(t, string(tX), string(tA)), "bridge " + "sofia/gateway/carrier-1/" + string(tB)},
		{"b calls x", fixtureBody(t, "+"+string(tX), "+"+string(tB)), "bridge " + "sofia/gateway/carrier-1/" + string(tA)},
		{"stranger calls x", fixtureBody(t, string(tX), string(tC)), "hangup CALL_REJECTED"},
		{"unknown x", fixtureBody(t, "4930999999", string(tA)), "hangup UNALLOCATED_NUMBER"},
		{"directory section", strings.Replace(fixtureBody(t, string(tX), string(tA)), "section=dialplan", "section=directory", 1), "not found"},
		{"empty body", "", "not found"},
		{"garbage", "%%%&&&===\x00\xff", "not found"},
		{"destination injection", fixtureBody(t, `4930100100"/><action application="system" data="rm`, string(tA)), "not found"},
		{"destination variable", fixtureBody(t, "${system(id)}", string(tA)), "not found"},
		{"caller injection", fixtureBody(t, string(tX), `4917011111"/><x`), "hangup CALL_REJECTED"},
		{"context injection", strings.Replace(fixtureBody(t, string(tX), string(tA)), "Hunt-Context=public", "Hunt-Context=%22%3E%3Cx%3E", 1), "not found"},
		{"uuid path traversal", strings.Replace(fixtureBody(t, string(tX), string(tA)), "&Unique-ID=5c9a", "&Unique-ID=../../5c9a", 1), "not found"},
		{"duplicate section", "section=directory&" + fixtureBody(t, string(tX), string(tA)), "not found"},
		{"long destination", fixtureBody(t, strings.Repeat("1", 10000), string(tA)), "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := postDialplan(t, srv, tt.body, basic)
			if code != http.StatusOK {
				t.Fatalf("got status %d, want 200", code)
			}
			d := parseDoc(t, out)
			got := "not found"
			if d.Section.Result == nil {
				as := d.Section.Context.Actions
				if len(as) == 0 {
					t.Fatalf("document without actions: %s", out)
				}
				last := as[len(as)-1]
				got = last.App + " " + last.Data
				if i := strings.LastIndex(got, "}"); last.App == "bridge" && i >= 0 {
					got = "bridge " + got[i+1:]
				}
			} else if d.Section.Name != "result" || d.Section.Result.Status != "not found" {
				t.Fatalf("got %+v", d)
			}
			if got != tt.want {
				t.Errorf("got %q, want %q\n%s", got, tt.want, out)
			}
		})
	}
}

// failingLines fails every lookup, as a database that is down would.
type failingLines struct{}

func (failingLines) Line(context.Context, callbridge.Number) (*dialplan.Line, error) {
	return nil, callbridge.Errorf(callbridge.EUNAVAILABLE, "database unavailable")
}

func TestFSDialplanLookupFailure(t *testing.T) {
	srv := dialplanServer(t, failingLines{}, nil)
	code, out := postDialplan(t, srv, fixtureBody(t, string(tX), string(tA)), basic)
	d := parseDoc(t, out)
	if code != http.StatusOK || d.Section.Result == nil {
		t.Errorf("got %d %s, want 200 not found (FreeSWITCH's static fallback then refuses)", code, out)
	}
}
