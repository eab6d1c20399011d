package role

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/terminator-gw/terminator/terminator"
)

// seedIfEmpty loads sample data through this process's own front on a
// first start: when profile 1 exists, the data survived a restart.
func seedIfEmpty(ctx context.Context, base string, n int, log *slog.Logger) error {
	// The front learns the web routes through etcd: wait for them.
	var status int
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		status, _ = send(ctx, "GET", base+"/profiles/1", "")
		if status == 200 || status == 404 && ctx.Err() == nil {
			break
		}
	}
	if status == 200 {
		return nil
	}
	log.Info("first start: seeding sample data", "profiles", n)
	return Seed(ctx, base, n)
}

var (
	firstNames = []string{"Ann", "Ben", "Chloe", "Dario", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Luca", "Mila", "Nils", "Olga", "Paul", "Rosa", "Sami", "Tara", "Umar"}
	cities     = []string{"Lyon", "Berlin", "Lisbon", "Krakow", "Utrecht", "Turin", "Ghent", "Brno", "Porto", "Aarhus"}
	hobbies    = []string{"hiking", "jazz", "board games", "cooking", "climbing", "film noir", "cycling", "poetry", "chess", "sailing"}
)

// Seed loads n sample profiles, with visits and flirts among them, through
// the front at base ("http://127.0.0.1:8080"). The sample is the same every
// time.
func Seed(ctx context.Context, base string, n int) error { return SeedNew(ctx, base, n, true) }

// ErrSeeded is SeedNew's refusal: sample profiles exist already.
var ErrSeeded = errors.New("sample profiles exist already")

// SeedNew is Seed for a store that may hold data already: unless
// overwrite, it writes nothing when any of the n sample profiles
// (1 to n) exists, and says which.
func SeedNew(ctx context.Context, base string, n int, overwrite bool) error {
	if !overwrite {
		var exist []string
		for i := 1; i <= n; i++ {
			switch status, body := send(ctx, "GET", base+"/profiles/"+strconv.Itoa(i), ""); status {
			case 200:
				exist = append(exist, strconv.Itoa(i))
			case 404:
			default:
				return fmt.Errorf("GET /profiles/%d: %d %s", i, status, body)
			}
		}
		if len(exist) > 0 {
			if len(exist) > 5 {
				exist = append(exist[:5], "...")
			}
			return fmt.Errorf("%w: %d of profiles 1 to %d (%s); -overwrite writes the sample over them", ErrSeeded, len(exist), n, strings.Join(exist, ", "))
		}
	}
	r := rand.New(rand.NewPCG(1, 2)) // the same sample every time
	put := func(method, path, body string, ok ...int) (int, error) {
		var status int
		var reply string
		// A busy front (503) or a route not learned yet (404 from the
		// front) is worth a few more tries.
		for try := 0; try < 20; try++ {
			status, reply = send(ctx, method, base+path, body)
			for _, s := range ok {
				if status == s {
					return status, nil
				}
			}
			if status != 503 && status != 0 || ctx.Err() != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return status, fmt.Errorf("%s %s: %d %s", method, path, status, reply)
	}
	for i := 1; i <= n; i++ {
		body := fmt.Sprintf(`{"name":%q,"age":%d,"city":%q,"bio":"likes %s and %s","photo_url":"https://photos.example/%d.jpg"}`,
			firstNames[r.IntN(len(firstNames))], 18+r.IntN(50), cities[r.IntN(len(cities))],
			hobbies[r.IntN(len(hobbies))], hobbies[r.IntN(len(hobbies))], i)
		if _, err := put("PUT", "/profiles/"+strconv.Itoa(i), body, 200, 201); err != nil {
			return err
		}
	}
	// What the seed adds to each profile's counts, to wait for below.
	want := make([]struct{ visits, flirts int }, n+1)
	for i := 1; i <= n && n > 1; i++ {
		for range r.IntN(4) {
			other := 1 + r.IntN(n)
			if other == i {
				continue
			}
			if _, err := put("POST", fmt.Sprintf("/profiles/%d/visits", i), fmt.Sprintf(`{"visitor":"%d"}`, other), 200); err != nil {
				return err
			}
			want[i].visits++
			if r.IntN(3) == 0 {
				msg := fmt.Sprintf(`{"from":"%d","message":"Hi %s fan!"}`, other, hobbies[r.IntN(len(hobbies))])
				status, err := put("POST", fmt.Sprintf("/profiles/%d/flirts", i), msg, 201, 409) // 409: one flirt per pair
				if err != nil {
					return err
				}
				if status == 201 {
					want[i].flirts++
				}
			}
		}
	}
	return waitCounts(ctx, base, want)
}

// seedSettle bounds how long the seed waits for the page's counts, which
// the notifications service projects from the visit and flirt events.
const seedSettle = 60 * time.Second

// waitCounts waits until each profile's page counts at least the visits
// and flirts the seed made (more when seeded before), so that the sample
// is whole when Seed returns.
func waitCounts(ctx context.Context, base string, want []struct{ visits, flirts int }) error {
	ctx, cancel := context.WithTimeout(ctx, seedSettle)
	defer cancel()
	for i := 1; i < len(want); i++ {
		for {
			var page struct{ Visits, Flirts *int }
			status, body := send(ctx, "GET", base+"/profiles/"+strconv.Itoa(i), "")
			if status == 200 && json.Unmarshal([]byte(body), &page) == nil &&
				page.Visits != nil && *page.Visits >= want[i].visits && page.Flirts != nil && *page.Flirts >= want[i].flirts {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("profile %d counts %d visits and %d flirts, want %d and %d: %d %s (%w)",
					i, deref(page.Visits), deref(page.Flirts), want[i].visits, want[i].flirts, status, body, ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	return nil
}

func deref(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}

func send(ctx context.Context, method, url, body string) (int, string) {
	client := http.DefaultClient
	if sock, path, ok := splitUnixURL(url); ok {
		client, url = unixClient(sock), "http://localhost"+path
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewBufferString(body))
	if err != nil {
		return 0, err.Error()
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// unixURLScheme starts the URL of a front on a unix socket, the socket's
// path escaped as the host: http+unix://%2Frun%2Fterminator%2Ffront.sock/profiles/1.
const unixURLScheme = "http+unix://"

// FrontURL is the base URL of a front listening on addr: "host:port", a
// URL already, or "unix:PATH" (see terminator.Listen), which gives an
// http+unix:// URL that the seed's requests dial.
func FrontURL(addr string) string {
	if sock, ok := terminator.UnixPath(addr); ok {
		return unixURLScheme + url.PathEscape(sock)
	}
	if strings.Contains(addr, "://") {
		return addr
	}
	return "http://" + addr
}

// splitUnixURL splits an http+unix:// URL into the socket and the path.
func splitUnixURL(u string) (sock, path string, ok bool) {
	rest, ok := strings.CutPrefix(u, unixURLScheme)
	if !ok {
		return "", "", false
	}
	host, path, _ := strings.Cut(rest, "/")
	sock, err := url.PathUnescape(host)
	return sock, "/" + path, err == nil
}

// unixClients holds one client per socket, its connections kept alive.
var unixClients sync.Map // socket path -> *http.Client

func unixClient(sock string) *http.Client {
	if c, ok := unixClients.Load(sock); ok {
		return c.(*http.Client)
	}
	var d net.Dialer
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "unix", sock) },
	}}
	c2, _ := unixClients.LoadOrStore(sock, c)
	return c2.(*http.Client)
}
