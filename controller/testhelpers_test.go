package controller_test

import (
	"bytes"
	"callbridge"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"callbridge/app"
	"callbridge/app/apptest"
	"callbridge/controller"
	"callbridge/esl/esltest"
	"callbridge/postgres"
	"callbridge/postgres/pgtest"

	"github.com/gin-gonic/gin"
)

// Credentials of the fully configured server. They are long and unusual
// so that finding them in a log can only mean they were logged.
const (
	fullAdminToken   = "adm1n-T0ken-9f2c7a1e5b3d4c6f8a0b2d4e6f8a1c3e"
	fullDialplanUser = "fs-dialplan-user"
	fullDialplanPass = "dp-Pa55-7c1e9a3b5d7f1a3c5e7b9d1f3a5c7e9b"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a
// logger shared by request goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Numbers of the privacy-number and callback tests: X from the pool, A,
// B and C mobiles the simulator's scripts answer.
const (
	tX = callbridge.Number("4930100100")
	tA = callbridge.Number("4917011111")
	tB = callbridge.Number("4917022222")
	tC = callbridge.Number("4917033333")
)

// fullEnv is a Server with every feature wired as `callbridge serve` wires
// it (app.New) to real dependencies (a fresh PostgreSQL database, the
// binding index fed by LISTEN/NOTIFY), served over real HTTP, with its
// logs captured at debug level. Every controller test builds its server
// this way (envOptions says what a test may add).
type fullEnv struct {
	t    testing.TB
	db   *postgres.DB
	app  *app.App
	srv  *controller.Server
	api  *httptest.Server
	logs *syncBuffer
	// fs is the simulated FreeSWITCH node, when the test asked for one.
	fs *esltest.Server
	// doc checks every answer against openapi.json.
	doc *apiDoc
}

// newFullEnv builds the server; tweak, when given, adjusts it before its
// handler is built.
func newFullEnv(t *testing.T, tweak func(*controller.Server)) *fullEnv {
	t.Helper()
	return newEnv(t, envOptions{tweak: tweak})
}

// newFullEnvWith builds the server with app.New, the wiring of `callbridge
// serve`: configure, when given, adjusts the configuration first.
func newFullEnvWith(t *testing.T, configure func(*app.Config), tweak func(*controller.Server)) *fullEnv {
	t.Helper()
	return newEnv(t, envOptions{configure: configure, tweak: tweak})
}

// envOptions are what a test adds to the fully wired server; the zero
// value adds nothing.
type envOptions struct {
	// db is the database (nil: a fresh one from pgtest.New).
	db *postgres.DB
	// configure adjusts the configuration.
	configure func(*app.Config)
	// fs, an unstarted simulator, becomes the controller's node; its
	// dialplan requests go to the API (apptest.Options.Switch).
	fs *esltest.Server
	// adjust changes the wired controller before it starts; tweak the
	// Server alone.
	adjust func(*app.App)
	tweak  func(*controller.Server)
}

// newEnv builds the server with app.New, the wiring of `callbridge serve`,
// through apptest.Run.
func newEnv(t testing.TB, o envOptions) *fullEnv {
	t.Helper()
	db := o.db
	if db == nil {
		db = pgtest.New(t)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	cfg := apptest.Config(t)
	cfg.AdminToken = fullAdminToken
	cfg.DialplanUser, cfg.DialplanPassword = fullDialplanUser, fullDialplanPass
	if o.configure != nil {
		o.configure(&cfg)
	}
	c := apptest.Run(t, db, cfg, apptest.Options{Log: log, Switch: o.fs, Adjust: func(a *app.App) {
		// 2026-12-06: November is closed for invoicing, December is not.
		a.Server.Now = func() time.Time { return time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC) }
		if o.adjust != nil {
			o.adjust(a)
		}
		if o.tweak != nil {
			o.tweak(a.Server)
		}
	}})
	return &fullEnv{t: t, db: db, app: c.App, srv: c.Server, api: c.API, logs: logs, fs: c.Switch, doc: loadAPIDoc(t)}
}

// answer is an HTTP response with its body read.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a generic value, failing the test when it is
// not JSON.
func (a answer) json(t testing.TB) map[string]any {
	t.Helper()
	var v map[string]any
	if err := json.Unmarshal(a.body, &v); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %.300s", a.status, err, a.body)
	}
	return v
}

// errorCode returns the code and field of an error answer, or "" when the
// body does not have the error shape.
func (a answer) errorCode() (code, field string) {
	var e struct {
		Error struct {
			Code  string `json:"code"`
			Field string `json:"field"`
		} `json:"error"`
	}
	if json.Unmarshal(a.body, &e) != nil {
		return "", ""
	}
	return e.Error.Code, e.Error.Field
}

// request is one call to the API.
type request struct {
	method, path string
	// auth is the whole Authorization header ("" sends none).
	auth        string
	contentType string
	body        io.Reader
	header      map[string]string
	// contentLength, when not zero, is sent as is (-1: unknown, chunked).
	contentLength int64
}

func (e *fullEnv) send(r request) answer {
	e.t.Helper()
	req, err := http.NewRequest(r.method, e.api.URL+r.path, r.body)
	if err != nil {
		e.t.Fatal(err)
	}
	if r.auth != "" {
		req.Header.Set("Authorization", r.auth)
	}
	if r.contentType != "" {
		req.Header.Set("Content-Type", r.contentType)
	}
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.contentLength != 0 {
		req.ContentLength = r.contentLength
	}
	resp, err := e.api.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read: %v", r.method, r.path, err)
	}
	a := answer{status: resp.StatusCode, header: resp.Header, body: body}
	if pattern, ok := e.pattern(r.method, r.path); ok {
		e.doc.checkAnswer(e.t, r.method, pattern, a)
	}
	return a
}

// pattern returns the gin route that serves method and path, preferring
// static segments over parameters as gin does.
func (e *fullEnv) pattern(method, path string) (string, bool) {
	path, _, _ = strings.Cut(path, "?")
	segs := strings.Split(path, "/")
	best, bestStatic := "", -1
	for _, r := range e.srv.Handler().(*gin.Engine).Routes() {
		if r.Method != method {
			continue
		}
		rs := strings.Split(r.Path, "/")
		if len(rs) != len(segs) {
			continue
		}
		static := 0
		for i := range rs {
			switch {
			case strings.HasPrefix(rs[i], ":") && segs[i] != "":
			case rs[i] == segs[i]:
				static++
			default:
				static = -1
			}
			if static < 0 {
				break
			}
		}
		if static > bestStatic {
			best, bestStatic = r.Path, static
		}
	}
	return best, bestStatic >= 0
}

// call sends a JSON body (a string is sent as is, anything else is
// marshalled) with a bearer credential.
func (e *fullEnv) call(method, path, token string, body any) answer {
	e.t.Helper()
	r := request{method: method, path: path}
	if token != "" {
		r.auth = "Bearer " + token
	}
	switch b := body.(type) {
	case nil:
	case string:
		r.body, r.contentType = strings.NewReader(b), "application/json"
	case []byte:
		r.body, r.contentType = bytes.NewReader(b), "application/json"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			e.t.Fatal(err)
		}
		r.body, r.contentType = bytes.NewReader(j), "application/json"
	}
	return e.send(r)
}

// mustCall is call that fails the test unless the status is want.
func (e *fullEnv) mustCall(want int, method, path, token string, body any) answer {
	e.t.Helper()
	a := e.call(method, path, token, body)
	if a.status != want {
		e.t.Fatalf("%s %s: got %d, want %d: %.500s", method, path, a.status, want, a.body)
	}
	return a
}

// tenant is an account created through the admin API, with its key.
type tenant struct {
	id, key string
}

func (e *fullEnv) newTenant(name string) tenant {
	e.t.Helper()
	a := e.mustCall(http.StatusCreated, "POST", "/v1/admin/accounts", fullAdminToken,
		map[string]any{"name": name, "service_number": "+4930990000", "prepaid": true}).json(e.t)
	acc, _ := a["account"].(map[string]any)
	id, _ := acc["id"].(string)
	key, _ := a["api_key"].(string)
	if id == "" || key == "" {
		e.t.Fatalf("create account: no id or key in %v", a)
	}
	return tenant{id: id, key: key}
}
