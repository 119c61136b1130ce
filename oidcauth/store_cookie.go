package oidcauth

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/caddy-bff/caddy-bff/internal/bounded"
)

// purposeSession binds sealed session cookies to their use.
const purposeSession = "bff session v1"

// cookieStore seals the whole session into the cookie: no server state but
// the list of ended sessions, so a copy of an old cookie is dead too.
type cookieStore struct {
	keys           *keyring
	ends           endings
	now            func() time.Time
	idle, lifetime time.Duration // for precomputed identities; 0 = none

	// opened caches recently opened cookies, so the hot path of a busy user
	// skips the AEAD and JSON work; keyed by the full sealed value.
	opened *bounded.Map[string, *session]
}

// maxOpenedCache bounds the opened-cookie cache (entries, not bytes; a
// sealed value is a few KiB at most, see maxCookieBytes).
const maxOpenedCache = 4096

func newCookieStore(keys *keyring, ends endings, now func() time.Time) *cookieStore {
	return &cookieStore{keys: keys, ends: ends, now: now, opened: bounded.New[string, *session](maxOpenedCache, nil)}
}

func (cs *cookieStore) load(ctx context.Context, value string) (*session, error) {
	s, ok := cs.opened.Get(value)
	if !ok {
		pt, err := cs.keys.open(purposeSession, value)
		if err != nil {
			return nil, errNoSession
		}
		pt, err = inflate(pt)
		if err != nil {
			return nil, errNoSession
		}
		s = new(session)
		if err := json.Unmarshal(pt, s); err != nil || s.ID == "" || s.Subject == "" {
			return nil, errNoSession
		}
		s.key = hashID(s.ID)
		if cs.idle > 0 {
			s.ident = s.identity(cs.idle, cs.lifetime)
		}
		cs.opened.Put(value, s)
	}
	ended, err := cs.ends.ended(ctx, s)
	if err != nil {
		return nil, err // fail closed: 503
	}
	if ended {
		return nil, errNoSession
	}
	return s, nil
}

func (cs *cookieStore) save(ctx context.Context, s *session, create bool, _ time.Time) (string, error) {
	if !create {
		ended, err := cs.ends.ended(ctx, s)
		if err != nil {
			return "", err
		}
		if ended {
			return "", errSessionEnded
		}
	}
	pt, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	sealed := cs.keys.seal(purposeSession, deflate(pt))
	// Checked on every write (login, refresh, touch): a cookie cut to fit
	// would silently log the user out, or worse, be read as another.
	if len(sealed) > maxCookieValue {
		return "", &sessionTooLargeError{size: len(sealed), limit: maxCookieValue}
	}
	return sealed, nil
}

// sessionTooLargeError: the sealed session does not fit the cookie
// store's chunks. The operator must act (fewer claims, or a server-side
// store); the request fails with 503 and the previous cookie stays.
type sessionTooLargeError struct{ size, limit int }

func (e *sessionTooLargeError) Error() string {
	return fmt.Sprintf("sealed session is %d bytes, more than the %d the session cookies hold", e.size, e.limit)
}

func (cs *cookieStore) remove(ctx context.Context, s *session, until time.Time) error {
	return cs.ends.endSession(ctx, s, until)
}

// Sealed session payloads are JSON ('{') or, when that saves room, 'z'
// and the JSON compressed with DEFLATE (RFC 1951): a smaller cookie is
// sent with every request. Compression happens before sealing, and only
// authenticated plaintext is ever inflated, so no attacker-made input
// reaches the decompressor; the size bound still caps a key-holder's
// mistake.
const (
	markDeflate    = 'z'
	maxSessionJSON = 64 << 10
)

// Compressors are pooled: a flate writer holds about 800 KB of state, and
// allocating one per sealed cookie (every login, refresh and touch) made
// each save cost that much garbage.
var (
	flateWriters = sync.Pool{New: func() any {
		zw, _ := flate.NewWriter(nil, flate.BestCompression) // level is valid
		return zw
	}}
	flateReaders sync.Pool // of io.ReadCloser that are flate.Resetter
)

func deflate(pt []byte) []byte {
	var buf bytes.Buffer
	buf.WriteByte(markDeflate)
	zw := flateWriters.Get().(*flate.Writer)
	zw.Reset(&buf)
	_, _ = zw.Write(pt)
	err := zw.Close()
	flateWriters.Put(zw)
	if err != nil || buf.Len() >= len(pt) {
		return pt
	}
	return buf.Bytes()
}

func inflate(pt []byte) ([]byte, error) {
	if len(pt) == 0 || pt[0] != markDeflate {
		return pt, nil
	}
	src := bytes.NewReader(pt[1:])
	zr, _ := flateReaders.Get().(io.ReadCloser)
	if zr == nil {
		zr = flate.NewReader(src)
	} else if zr.(flate.Resetter).Reset(src, nil) != nil {
		zr = flate.NewReader(src)
	}
	out, err := io.ReadAll(io.LimitReader(zr, maxSessionJSON+1))
	flateReaders.Put(zr)
	if err != nil {
		return nil, err
	}
	if len(out) > maxSessionJSON {
		return nil, errMalformed
	}
	return out, nil
}
