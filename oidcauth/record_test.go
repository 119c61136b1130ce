package oidcauth

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func testSession() *session {
	return &session{
		ID: newSessionID(), Subject: "user-1", SID: "op-session-7",
		Claims:      map[string]any{"email": "alice@example.com", "scope": "openid admin"},
		AccessToken: "eyJaccess.token.value", RefreshToken: "refresh-token-value-123456", IDToken: "eyJid.token.value",
		Created: 1_700_000_000_000, LastSeen: 1_700_000_100_000, TokenExpiry: 1_700_000_300,
	}
}

// A server-side record holds neither the session id nor a token nor a
// claim, and opens only with the id the cookie carries: the keys alone (a
// dump plus the gateway's config) open nothing.
func TestRecordBoundToSessionID(t *testing.T) {
	kr := mustKeyring(t, key1)
	s := testSession()
	raw, err := encodeRecord(kr, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{s.ID, s.AccessToken, s.RefreshToken, s.IDToken, "alice@example.com", "admin", s.Subject, s.SID} {
		if strings.Contains(string(raw), secret) {
			t.Errorf("the record holds %q in clear", secret)
		}
	}
	got, err := decodeRecord(kr, raw, s.ID)
	if err != nil || got.AccessToken != s.AccessToken || got.ID != s.ID || got.Claims["email"] != "alice@example.com" || got.key != hashID(s.ID) {
		t.Fatalf("decode with the id: %+v %v", got, err)
	}
	// Every other way in fails.
	if _, err := decodeRecord(kr, raw, newSessionID()); !errors.Is(err, errBadRecord) {
		t.Fatalf("another id opened the record: %v", err)
	}
	if _, err := decodeRecord(kr, raw, ""); !errors.Is(err, errBadRecord) {
		t.Fatalf("no id opened the record: %v", err)
	}
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	if _, err := kr.open(purposeRecord, rec.Sealed); err == nil {
		t.Fatal("the keyring alone opened the record")
	}
	if _, err := decodeRecord(mustKeyring(t, key2), raw, s.ID); err == nil {
		t.Fatal("another keyring opened the record")
	}
	// The meta part is authenticated: pushing the idle end back breaks it.
	m, err := readMeta(raw)
	if err != nil || m.Created != s.Created || m.LastSeen != s.LastSeen || m.Sub != digest("sub", s.Subject) || m.SID != digest("sid", s.SID) {
		t.Fatalf("meta %+v %v", m, err)
	}
	m.LastSeen += int64(time.Hour / time.Millisecond)
	meta, _ := json.Marshal(m)
	forged, _ := json.Marshal(record{Meta: meta, Sealed: rec.Sealed})
	if _, err := decodeRecord(kr, forged, s.ID); err == nil {
		t.Fatal("a record with altered meta opened")
	}
	// Rotation: a record sealed under the previous key still opens.
	if _, err := decodeRecord(mustKeyring(t, key2, key1), raw, s.ID); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
}

// The shared refresh result (rr:) is bound to the session id too.
func TestSharedRefreshResultBound(t *testing.T) {
	kr := mustKeyring(t, key1)
	s := testSession()
	pt, err := marshalWithoutID(s)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(pt), s.ID) {
		t.Fatal("the refresh result holds the session id")
	}
	sealed, err := kr.sealBound(purposeRefresh, s.ID, nil, pt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kr.open(purposeRefresh, sealed); err == nil {
		t.Fatal("the keyring alone opened a refresh result")
	}
	if _, err := kr.openBound(purposeRefresh, newSessionID(), nil, sealed); err == nil {
		t.Fatal("another session id opened a refresh result")
	}
	if _, err := kr.openBound(purposeRecord, s.ID, nil, sealed); err == nil {
		t.Fatal("a refresh result opened as a record")
	}
	if got, err := kr.openBound(purposeRefresh, s.ID, nil, sealed); err != nil || string(got) != string(pt) {
		t.Fatalf("open with the id: %v", err)
	}
}

// The memory store keeps records too, and ends sessions by hashed
// subject or provider session.
func TestMemoryStoreRecords(t *testing.T) {
	now := time.UnixMilli(1_700_000_200_000)
	ms := newMemoryStore(func() time.Time { return now })
	v := memoryView{ms: ms, keys: mustKeyring(t, key1)}
	ctx := context.Background()
	a, b := testSession(), testSession()
	b.SID = "other-op-session"
	for _, s := range []*session{a, b} {
		if _, err := v.save(ctx, s, true, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for k, e := range ms.m {
		for _, secret := range []string{a.ID, b.ID, a.AccessToken, a.RefreshToken, "alice@example.com"} {
			if strings.Contains(k, secret) || strings.Contains(string(e.raw), secret) {
				t.Fatalf("the memory store holds %q in clear", secret)
			}
		}
	}
	got, err := v.load(ctx, a.ID)
	if err != nil || got.RefreshToken != a.RefreshToken {
		t.Fatalf("load: %+v %v", got, err)
	}
	if n := ms.removeSessions(a.Subject, a.SID); n != 1 {
		t.Fatalf("back-channel by sid ended %d sessions, want 1", n)
	}
	if _, err := v.load(ctx, a.ID); !errors.Is(err, errNoSession) {
		t.Fatalf("the ended session loads: %v", err)
	}
	if n := ms.removeSessions(b.Subject, ""); n != 1 {
		t.Fatalf("back-channel by sub ended %d sessions, want 1", n)
	}
	if _, err := v.save(ctx, a, false, now.Add(time.Hour)); !errors.Is(err, errSessionEnded) {
		t.Fatalf("saving an ended session: %v, want errSessionEnded", err)
	}
}

// The cookie store refuses to seal more than its cookies hold, on every
// write, instead of a cookie cut short.
func TestCookieStoreTooLarge(t *testing.T) {
	cs := newCookieStore(mustKeyring(t, key1), memoryEndings{rv: newRevocations(), now: time.Now}, time.Now)
	s := testSession()
	big := make([]any, 4000)
	for i := range big {
		big[i] = newSessionID()[:16]
	}
	s.Claims["groups"] = big
	for _, create := range []bool{true, false} {
		_, err := cs.save(context.Background(), s, create, time.Time{})
		e, ok := errors.AsType[*sessionTooLargeError](err)
		if !ok || e.size <= maxCookieValue || e.limit != maxCookieValue {
			t.Fatalf("create=%v: %v, want a sessionTooLargeError", create, err)
		}
	}
	s.Claims["groups"] = big[:10]
	if v, err := cs.save(context.Background(), s, true, time.Time{}); err != nil || len(v) > maxCookieValue {
		t.Fatalf("a normal session: %d bytes, %v", len(v), err)
	}
}

// A replayed logout token is refused only once its logout succeeded.
func TestLogoutTokenRecordedAfterEnding(t *testing.T) {
	now := time.Now()
	e := memoryEndings{rv: newRevocations(), now: func() time.Time { return now }}
	ctx := context.Background()
	if seen, _ := e.jtiSeen(ctx, "iss\x00j1"); seen {
		t.Fatal("unseen jti reported seen")
	}
	// Checking does not record: a failed logout can be retried.
	if seen, _ := e.jtiSeen(ctx, "iss\x00j1"); seen {
		t.Fatal("checking a jti recorded it")
	}
	if err := e.recordJTI(ctx, "iss\x00j1", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if seen, _ := e.jtiSeen(ctx, "iss\x00j1"); !seen {
		t.Fatal("a recorded jti is not seen")
	}
	now = now.Add(2 * time.Minute)
	if seen, _ := e.jtiSeen(ctx, "iss\x00j1"); seen {
		t.Fatal("an expired jti is still seen")
	}
}
