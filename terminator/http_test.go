package terminator_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/nanobus"
	"github.com/terminator-gw/terminator/terminator"
)

// HEAD is served from GET routes; a routed path asked with another method
// gets 405 with Allow; OPTIONS without a CORS policy is just another method.
func TestMethods(t *testing.T) {
	svc := echoService(t, "echo", nil)
	srv, _ := front(t, terminator.Config{}, echoRoutes("echo"), svc)
	base := "http://" + srv.Addr()

	// The same headers every time (Go's client asks GET, not HEAD, for
	// gzip), so that the echoed bodies have the same length.
	same := map[string]string{"Accept-Encoding": "identity", "X-Request-Id": "methods-test"}
	getResp, getBody := do(t, "GET", base+"/echo", "", same)
	tests := []struct {
		method, path string
		want         int
		allow        string
	}{
		{"HEAD", "/echo", 200, ""},
		{"HEAD", "/items/7", 200, ""},
		{"DELETE", "/echo", 405, "GET, HEAD, POST"},
		{"PUT", "/items/7", 405, "GET, HEAD"},
		{"OPTIONS", "/echo", 405, "GET, HEAD, POST"},
		{"POST", "/slow", 405, "GET, HEAD"},
		{"HEAD", "/nowhere", 404, ""},
		{"DELETE", "/nowhere", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, body := do(t, tt.method, base+tt.path, "", same)
			if resp.StatusCode != tt.want || resp.Header.Get("Allow") != tt.allow {
				t.Fatalf("%d Allow %q (%s), want %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"), body, tt.want, tt.allow)
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Fatal("no X-Request-Id")
			}
			if tt.method == "HEAD" && tt.want == 200 {
				// The GET answer's headers, no body.
				if body != "" || resp.Header.Get("X-Service") != "echo" || resp.Header.Get("Content-Type") != getResp.Header.Get("Content-Type") {
					t.Fatalf("HEAD: body %q, headers %v; GET's %v", body, resp.Header, getResp.Header)
				}
				if tt.path == "/echo" && resp.ContentLength != int64(len(getBody)) {
					t.Fatalf("HEAD: Content-Length %d, GET's body is %d bytes", resp.ContentLength, len(getBody))
				}
			}
		})
	}
	if got := srv.Status().HTTP["method_not_allowed"]; got != 4 {
		t.Fatalf("method_not_allowed = %d, want 4", got)
	}
}

// The front's own errors are problem+json (RFC 9457) for a client that
// accepts JSON, plain text otherwise.
func TestProblemJSON(t *testing.T) {
	svc := echoService(t, "echo", nil)
	ghost, _ := nanobus.ParseRoute("GET /ghost")
	routes := append(echoRoutes("echo"), terminator.Route{Route: ghost, Service: "ghost"})
	srv, _ := front(t, terminator.Config{MaxBodyBytes: 1024}, routes, svc)
	base := "http://" + srv.Addr()
	tests := []struct {
		method, path, body, accept string
		want                       int
		json                       bool
		detail                     string
	}{
		{"GET", "/nowhere", "", "application/json", 404, true, "no route for GET /nowhere"},
		{"GET", "/nowhere", "", "text/html, application/problem+json;q=0.9", 404, true, "no route for GET /nowhere"},
		{"GET", "/nowhere", "", "application/vnd.api+json", 404, true, "no route for GET /nowhere"},
		{"GET", "/nowhere", "", "", 404, false, "no route for GET /nowhere"},
		{"GET", "/nowhere", "", "text/html", 404, false, "no route for GET /nowhere"},
		{"GET", "/nowhere", "", "application/json;q=0", 404, false, "no route for GET /nowhere"},
		{"GET", `/no"where<`, "", "application/json", 404, true, `no route for GET /no%22where%3C`},
		{"DELETE", "/echo", "", "application/json", 405, true, "method not allowed: DELETE"},
		{"GET", "/ghost", "", "application/json", 503, true, ""},
		{"GET", "/slow", "", "application/json", 504, true, ""},
		{"POST", "/echo", strings.Repeat("x", 2048), "application/json", 413, true, "request body too large"},
		{"GET", "/a/%2F/b", "", "application/json", 400, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.accept, func(t *testing.T) {
			h := map[string]string{}
			if tt.accept != "" {
				h["Accept"] = tt.accept
			}
			resp, body := do(t, tt.method, base+tt.path, tt.body, h)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
			ct := resp.Header.Get("Content-Type")
			if !tt.json {
				if !strings.HasPrefix(ct, "text/plain") || (tt.detail != "" && body != tt.detail) {
					t.Fatalf("Content-Type %q, body %q; want text/plain %q", ct, body, tt.detail)
				}
				return
			}
			var p struct {
				Type, Title, Detail string
				Status              int
			}
			if ct != "application/problem+json" {
				t.Fatalf("Content-Type %q, want application/problem+json (%s)", ct, body)
			}
			if err := json.Unmarshal([]byte(body), &p); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if p.Type != "about:blank" || p.Status != tt.want || p.Title != http.StatusText(tt.want) || p.Detail == "" ||
				(tt.detail != "" && p.Detail != tt.detail) {
				t.Fatalf("problem %+v, want status %d title %q detail %q", p, tt.want, http.StatusText(tt.want), tt.detail)
			}
		})
	}
}

// CORS: the front's policy from its config, a route's own overriding it;
// preflights answered at the front; actual answers carry the allowed
// origin and Vary: Origin; a disallowed origin gets no CORS headers.
func TestCORS(t *testing.T) {
	svc := echoService(t, "echo", nil)
	routes := echoRoutes("echo")
	for i := range routes {
		if routes[i].Name == "GET /items/{id}" {
			routes[i].CORS = &nanobus.CORS{Origins: []string{"https://other.example"}, Credentials: true, Methods: []string{"GET"}}
		}
	}
	srv, _ := front(t, terminator.Config{CORS: nanobus.CORS{Origins: []string{"https://app.example"},
		Headers: []string{"Content-Type", "X-Token"}, MaxAge: 10 * time.Minute}}, routes, svc)
	base := "http://" + srv.Addr()
	const app, other, evil = "https://app.example", "https://other.example", "https://evil.example"

	tests := []struct {
		name, method, path, origin, preflight string
		want                                  int
		headers                               map[string]string // "" means absent
	}{
		{"preflight", "OPTIONS", "/echo", app, "POST", 204, map[string]string{
			"Access-Control-Allow-Origin": app, "Access-Control-Allow-Methods": "GET, HEAD, POST, OPTIONS",
			"Access-Control-Allow-Headers": "Content-Type, X-Token", "Access-Control-Max-Age": "600",
			"Access-Control-Allow-Credentials": "", "Allow": "GET, HEAD, POST, OPTIONS"}},
		{"preflight, disallowed origin", "OPTIONS", "/echo", evil, "POST", 204, map[string]string{
			"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "", "Access-Control-Max-Age": ""}},
		{"preflight, method not routed", "OPTIONS", "/echo", app, "DELETE", 204, map[string]string{
			"Access-Control-Allow-Origin": ""}},
		{"plain OPTIONS", "OPTIONS", "/echo", "", "", 204, map[string]string{
			"Allow": "GET, HEAD, POST, OPTIONS", "Access-Control-Allow-Origin": ""}},
		{"actual", "GET", "/echo", app, "", 200, map[string]string{
			"Access-Control-Allow-Origin": app, "Vary": "Origin", "Access-Control-Expose-Headers": "X-Request-Id, Server-Timing, Retry-After"}},
		{"actual, disallowed origin", "GET", "/echo", evil, "", 200, map[string]string{
			"Access-Control-Allow-Origin": "", "Vary": "Origin", "Access-Control-Expose-Headers": ""}},
		{"actual, no origin", "GET", "/echo", "", "", 200, map[string]string{
			"Access-Control-Allow-Origin": "", "Vary": ""}},
		{"405 lists OPTIONS", "DELETE", "/echo", app, "", 405, map[string]string{"Allow": "GET, HEAD, POST, OPTIONS"}},
		{"route's own: the front's origin refused", "GET", "/items/1", app, "", 200, map[string]string{
			"Access-Control-Allow-Origin": ""}},
		{"route's own: its origin", "GET", "/items/1", other, "", 200, map[string]string{
			"Access-Control-Allow-Origin": other, "Access-Control-Allow-Credentials": "true"}},
		{"route's own preflight", "OPTIONS", "/items/1", other, "GET", 204, map[string]string{
			"Access-Control-Allow-Origin": other, "Access-Control-Allow-Methods": "GET", "Access-Control-Allow-Headers": "",
			"Access-Control-Allow-Credentials": "true", "Allow": "GET, HEAD, OPTIONS"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.origin != "" {
				h["Origin"] = tt.origin
			}
			if tt.preflight != "" {
				h["Access-Control-Request-Method"] = tt.preflight
			}
			resp, body := do(t, tt.method, base+tt.path, "", h)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
			for k, want := range tt.headers {
				if got := strings.Join(resp.Header.Values(k), ", "); got != want {
					t.Errorf("%s: %q, want %q", k, got, want)
				}
			}
		})
	}
	// Preflights never reach the service.
	st := srv.Status()
	if st.HTTP["preflights"] != 5 {
		t.Fatalf("preflights answered at the front: %d, want 5", st.HTTP["preflights"])
	}
	for _, r := range st.Routes {
		if r.Name == "GET /echo" && r.Responses["2xx"] != 3 {
			t.Fatalf("GET /echo reached the service %d times, want 3 (the actual requests only)", r.Responses["2xx"])
		}
	}
}

// A CORS policy browsers would misread, or one that lets every site call
// with its visitors' credentials, is refused with a clear error; a route's
// is ignored (logged), and the front's applies.
func TestCORSRefused(t *testing.T) {
	for _, tt := range []struct {
		cors nanobus.CORS
		want string
	}{
		{nanobus.CORS{Origins: []string{"*"}, Credentials: true}, "credentials for any origin"},
		{nanobus.CORS{Origins: []string{"app.example"}}, `CORS origin "app.example": want * or scheme://host[:port]`},
		{nanobus.CORS{Origins: []string{"https://app.example/path"}}, "want * or scheme://host[:port]"},
		{nanobus.CORS{Origins: []string{"https://app.example"}, Methods: []string{"get"}}, `CORS method "get": want an upper-case method`},
		{nanobus.CORS{Origins: []string{"https://app.example"}, Headers: []string{"X Token"}}, `CORS header "X Token": want a header name`},
	} {
		_, err := terminator.New(terminator.Config{CORS: tt.cors}, nil, quiet)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New with CORS %+v: %v, want an error saying %q", tt.cors, err, tt.want)
		}
	}

	svc := echoService(t, "echo", nil)
	routes := echoRoutes("echo")
	routes[0].CORS = &nanobus.CORS{Origins: []string{"*"}, Credentials: true} // GET /echo
	srv, _ := front(t, terminator.Config{CORS: nanobus.CORS{Origins: []string{"https://app.example"}}}, routes, svc)
	resp, _ := do(t, "GET", "http://"+srv.Addr()+"/echo", "", map[string]string{"Origin": "https://evil.example"})
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("a refused route policy let https://evil.example in: %q", got)
	}
	resp, _ = do(t, "GET", "http://"+srv.Addr()+"/echo", "", map[string]string{"Origin": "https://app.example"})
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://app.example" {
		t.Fatalf("the front's policy does not apply in place of a refused route policy: %q", got)
	}
}
