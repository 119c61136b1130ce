package oidcauth

import (
	"strings"
	"testing"
)

const (
	key1 = "0123456789abcdef0123456789abcdef-one"
	key2 = "0123456789abcdef0123456789abcdef-two"
)

func mustKeyring(t testing.TB, secrets ...string) *keyring {
	t.Helper()
	kr, err := newKeyring(secrets)
	if err != nil {
		t.Fatal(err)
	}
	return kr
}

func TestKeyringConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		secrets []string
		err     string
	}{
		{"none", nil, "no keys"},
		{"short", []string{"too-short"}, "key 1 is 9 bytes, need at least 32"},
		{"second short", []string{key1, "x"}, "key 2 is 1 bytes"},
		{"duplicate", []string{key1, key1}, "key 2 repeats key 1"},
		{"ok", []string{key1, key2}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newKeyring(tc.secrets)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestSealOpen(t *testing.T) {
	kr := mustKeyring(t, key1)
	sealed := kr.seal("p", []byte("hello"))
	if got, err := kr.open("p", sealed); err != nil || string(got) != "hello" {
		t.Fatalf("open = %q, %v", got, err)
	}
	if strings.Contains(sealed, "hello") {
		t.Fatal("plaintext visible in sealed value")
	}
	if again := kr.seal("p", []byte("hello")); again == sealed {
		t.Fatal("two seals of the same value are equal: nonce reuse")
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	attacks := map[string]string{
		"empty":           "",
		"kid only":        sealed[:kidLen],
		"no separator":    strings.Replace(sealed, ".", "", 1),
		"truncated":       sealed[:len(sealed)-4],
		"truncated hard":  sealed[:kidLen+5],
		"flipped body":    flip(sealed, len(sealed)-10),
		"flipped nonce":   flip(sealed, kidLen+2),
		"unknown kid":     "AAAAAAAA" + sealed[kidLen:],
		"bad base64":      sealed[:kidLen+1] + "!!!!" + sealed[kidLen+5:],
		"appended":        sealed + "AAAA",
		"oversized":       sealed + strings.Repeat("A", 100000),
		"other purpose":   kr.seal("q", []byte("hello")),
		"other key":       mustKeyring(t, key2).seal("p", []byte("hello")),
		"padding":         sealed + "==",
		"space":           " " + sealed,
		"unicode":         sealed[:kidLen+1] + "é" + sealed[kidLen+1:],
		"separator twice": sealed[:kidLen] + ".." + sealed[kidLen+1:],
	}
	for name, v := range attacks {
		t.Run(name, func(t *testing.T) {
			if got, err := kr.open("p", v); err == nil {
				t.Fatalf("opened forged value to %q", got)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	old := mustKeyring(t, key1)
	sealedOld := old.seal("p", []byte("v"))
	rotated := mustKeyring(t, key2, key1)
	if got, err := rotated.open("p", sealedOld); err != nil || string(got) != "v" {
		t.Fatalf("rotated ring cannot open old value: %v", err)
	}
	sealedNew := rotated.seal("p", []byte("v"))
	if sealedNew[:kidLen] == sealedOld[:kidLen] {
		t.Fatal("new seals still use the old key")
	}
	if _, err := old.open("p", sealedNew); err == nil {
		t.Fatal("old ring opened a value sealed with a key it does not hold")
	}
	dropped := mustKeyring(t, key2)
	if _, err := dropped.open("p", sealedOld); err == nil {
		t.Fatal("a retired key still opens")
	}
}

func FuzzOpen(f *testing.F) {
	kr := mustKeyring(f, key1)
	f.Add(kr.seal(purposeSession, []byte(`{"i":"x","s":"y"}`)))
	f.Add("")
	f.Add("AAAAAAAA.")
	f.Add(strings.Repeat("A", 5000))
	f.Fuzz(func(t *testing.T, v string) {
		cs := newCookieStore(kr, memoryEndings{rv: newRevocations(), now: nowFunc()}, nowFunc())
		s, err := cs.load(t.Context(), v)
		if err == nil && (s == nil || s.ID == "") {
			t.Fatal("load succeeded without a session")
		}
	})
}
