package events_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/terminator-gw/terminator/services/store"
	"github.com/terminator-gw/terminator/services/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func openPostgres(t *testing.T, url, namespace string) store.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := store.Open(ctx, url, namespace)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// On PostgreSQL, two instances of the publisher commit the same keys at
// once (their counters conflict, and one transaction retries), and two
// instances of a group share one position: every event is applied once, in
// the order of its key, though commits arrive out of the order they began
// in. A reader stopped mid-stream hands over to the other.
func TestPostgresConcurrentPublishersAndGroup(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL")
	}
	url := pgtest.NewDatabase(t)
	pubs := []*publisher{startPublisherOn(t, openPostgres(t, url, "pub")), startPublisherOn(t, openPostgres(t, url, "pub"))}
	subStore := openPostgres(t, url, "sub")
	first := startSubscriberOf(t, subStore, "g", pubs)
	second := startSubscriberOf(t, openPostgres(t, url, "sub"), "g", pubs)

	keys := []string{"a", "b", "c", "d"}
	const perKey = 30
	var wg sync.WaitGroup
	for _, k := range keys {
		// One writer per key keeps the key's order known; the keys' writers
		// run at once, each alternating between the instances.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perKey {
				pubs[i%2].publish(t, k, fmt.Sprintf("%s-%d", k, i))
			}
		}()
	}
	wg.Wait()
	want := map[string][]string{}
	for _, k := range keys {
		for i := range perKey {
			want[k] = append(want[k], fmt.Sprintf("%s-%d", k, i))
		}
	}
	waitFor(t, "every event once, in order per key", subStore, want)

	// The reader goes; the other instance takes over from the position.
	reader := first
	if subs := second.bus.Stats().Subscriptions; len(subs) == 1 && subs[0].Reading {
		reader = second
	}
	reader.stop()
	for _, k := range keys {
		pubs[0].publish(t, k, k+"-after")
		want[k] = append(want[k], k+"-after")
	}
	waitFor(t, "after the reader stopped", subStore, want)
}
