package oidcauth

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/caddy-bff/caddy-bff/internal/bounded"
	"github.com/caddy-bff/caddy-bff/internal/redisconf"
	"github.com/caddy-bff/caddy-bff/internal/redistest"
)

// storeKind builds one session store over shared state; with keys it
// gives the same sessions seen through another keyring (rotation).
type storeKind struct {
	name string
	// serverSide stores enforce `until` themselves; the cookie store leaves
	// expiry to the handler (session.alive).
	serverSide bool
	open       func(keys *keyring) store
}

func storeKinds(t *testing.T) []storeKind {
	t.Helper()
	ms := newMemoryStore(time.Now)
	memEnds := memoryEndings{rv: newRevocations(), now: time.Now}
	kinds := []storeKind{
		{"cookie", false, func(k *keyring) store { return newCookieStore(k, memEnds, time.Now) }},
		{"memory", true, func(k *keyring) store {
			return memoryView{ms: ms, keys: k, decoded: bounded.New[string, decodedMemory](maxDecoded, nil)}
		}},
	}
	srv := redistest.Start(t)
	rc, err := (&redisconf.Config{Addresses: []string{srv.Addr()}, KeyPrefix: "contract:"}).Resolve()
	if err != nil {
		t.Fatal(err)
	}
	client, release, err := rc.Client()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	redisEnds := redisEndings{c: client, cfg: rc, now: time.Now}
	return append(kinds,
		storeKind{"cookie with redis endings", false, func(k *keyring) store { return newCookieStore(k, redisEnds, time.Now) }},
		storeKind{"redis", true, func(k *keyring) store {
			return &redisStore{c: client, cfg: rc, keys: k, now: time.Now, decoded: bounded.New[string, decodedSession](maxDecoded, nil)}
		}},
	)
}

// TestStoreContract runs the same promises against every session store:
// what is saved loads back, nothing else loads, an update is seen, a
// removed session never loads or saves again (nor does an older copy of
// its cookie), keys rotate, and server-side stores forget at `until`.
func TestStoreContract(t *testing.T) {
	ctx := context.Background()
	for _, kind := range storeKinds(t) {
		t.Run(kind.name, func(t *testing.T) {
			st := kind.open(mustKeyring(t, key1))
			now := time.Now()
			until := now.Add(time.Hour)
			s := testSession()
			s.Created, s.LastSeen = now.UnixMilli(), now.UnixMilli()

			v1, err := st.save(ctx, s, true, until)
			if err != nil {
				t.Fatal(err)
			}
			got, err := st.load(ctx, v1)
			if err != nil || got.Subject != s.Subject || got.AccessToken != s.AccessToken ||
				got.RefreshToken != s.RefreshToken || got.Claims["email"] != "alice@example.com" || got.hkey() != hashID(s.ID) {
				t.Fatalf("load after save: %+v %v", got, err)
			}

			for _, bad := range []string{"", "garbage", newSessionID(), v1[:len(v1)-2] + "AA", v1 + "x"} {
				if _, err := st.load(ctx, bad); !errors.Is(err, errNoSession) {
					t.Errorf("load(%.12q…) = %v, want errNoSession", bad, err)
				}
			}

			upd := *got
			upd.AccessToken = "eyJrefreshed.access.token"
			v2, err := st.save(ctx, &upd, false, until)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := st.load(ctx, v2); err != nil || got.AccessToken != upd.AccessToken {
				t.Fatalf("load after update: %+v %v", got, err)
			}

			// Rotation: the old key still opens under a new one; without it,
			// nothing sealed with it opens, and what the new key sealed does.
			rotated := kind.open(mustKeyring(t, key2, key1))
			if got, err := rotated.load(ctx, v2); err != nil || got.AccessToken != upd.AccessToken {
				t.Fatalf("after rotation: %+v %v", got, err)
			}
			v3, err := rotated.save(ctx, &upd, false, until)
			if err != nil {
				t.Fatal(err)
			}
			retired := kind.open(mustKeyring(t, key2))
			if kind.serverSide {
				// One record per session: re-sealed under key2 by the save above.
				if _, err := retired.load(ctx, v3); err != nil {
					t.Fatalf("sealed under the new key: %v", err)
				}
			} else {
				if _, err := retired.load(ctx, v2); !errors.Is(err, errNoSession) {
					t.Fatalf("a cookie sealed under the retired key opened: %v", err)
				}
				if _, err := retired.load(ctx, v3); err != nil {
					t.Fatalf("a cookie sealed under the new key: %v", err)
				}
			}

			if err := st.remove(ctx, &upd, until); err != nil {
				t.Fatal(err)
			}
			for i, v := range []string{v1, v2, v3} {
				if _, err := rotated.load(ctx, v); !errors.Is(err, errNoSession) {
					t.Errorf("copy %d of the removed session loads: %v", i+1, err)
				}
			}
			if _, err := st.save(ctx, &upd, false, until); !errors.Is(err, errSessionEnded) {
				t.Fatalf("save of the removed session: %v, want errSessionEnded", err)
			}

			// A new login (create) is another session, unaffected.
			other := testSession()
			other.Created, other.LastSeen = now.UnixMilli(), now.UnixMilli()
			if v, err := st.save(ctx, other, true, until); err != nil {
				t.Fatal(err)
			} else if _, err := st.load(ctx, v); err != nil {
				t.Fatalf("another session after a removal: %v", err)
			}

			if !kind.serverSide {
				return
			}
			short := testSession()
			short.Created, short.LastSeen = now.UnixMilli(), now.UnixMilli()
			v, err := st.save(ctx, short, true, time.Now().Add(1200*time.Millisecond))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.load(ctx, v); err != nil {
				t.Fatalf("before until: %v", err)
			}
			time.Sleep(1500 * time.Millisecond)
			if _, err := st.load(ctx, v); !errors.Is(err, errNoSession) {
				t.Fatalf("after until: %v, want errNoSession", err)
			}
		})
	}
}
