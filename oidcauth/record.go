package oidcauth

import (
	"encoding/json"
	"errors"
)

// purposeRecord binds sealed server-side session records (memory and Redis
// stores) to their use.
const purposeRecord = "bff record v1"

// A record is a session as a server-side store keeps it:
//
//	{"m": {meta}, "x": "<sealed session>"}
//
// The store's key is the hash of the session id (hashID); the record never
// holds the id. The session itself (subject, claims, tokens) is sealed with
// a key derived from the session keys and the session id, which only the
// browser's cookie holds, so a dump of the store, even together with the
// gateway's config, yields no token, no claim and no way in. The meta part
// is what must be read without a cookie (expiries, hashed subject and
// provider session for back-channel logout and session listings); it is
// authenticated as the seal's additional data, so it cannot be altered
// (an idle end pushed back, say) without the record failing to open.
type record struct {
	Meta   json.RawMessage `json:"m"`
	Sealed string          `json:"x"`
}

// recordMeta is the unsealed part of a record.
type recordMeta struct {
	Sub         string `json:"u"`           // digest("sub", subject)
	SID         string `json:"p,omitempty"` // digest("sid", provider sid)
	Created     int64  `json:"ct"`          // unix milliseconds
	LastSeen    int64  `json:"ls"`          // unix milliseconds
	TokenExpiry int64  `json:"ax,omitempty"`
}

func metaOf(s *session) recordMeta {
	m := recordMeta{Sub: digest("sub", s.Subject), Created: s.Created, LastSeen: s.LastSeen, TokenExpiry: s.TokenExpiry}
	if s.SID != "" {
		m.SID = digest("sid", s.SID)
	}
	return m
}

// encodeRecord seals s (its ID left out) for a server-side store.
func encodeRecord(keys *keyring, s *session) ([]byte, error) {
	meta, err := json.Marshal(metaOf(s))
	if err != nil {
		return nil, err
	}
	pt, err := marshalWithoutID(s)
	if err != nil {
		return nil, err
	}
	sealed, err := keys.sealBound(purposeRecord, s.ID, meta, pt)
	if err != nil {
		return nil, err
	}
	return json.Marshal(record{Meta: meta, Sealed: sealed})
}

// errBadRecord: a stored record that does not open with this session id
// (another id, a retired key, or tampering). The user is anonymous.
var errBadRecord = errors.New("session record does not open")

// decodeRecord opens a record for the session id the cookie carried.
func decodeRecord(keys *keyring, raw []byte, id string) (*session, error) {
	var rec record
	if err := json.Unmarshal(raw, &rec); err != nil || len(rec.Meta) == 0 {
		return nil, errBadRecord
	}
	pt, err := keys.openBound(purposeRecord, id, rec.Meta, rec.Sealed)
	if err != nil {
		return nil, errBadRecord
	}
	s := new(session)
	if err := json.Unmarshal(pt, s); err != nil || s.Subject == "" {
		return nil, errBadRecord
	}
	s.ID = id
	s.key = hashID(id)
	return s, nil
}

// readMeta reads a record's unsealed part, for readers without the cookie.
func readMeta(raw []byte) (recordMeta, error) {
	var rec record
	var m recordMeta
	if err := json.Unmarshal(raw, &rec); err != nil {
		return m, err
	}
	err := json.Unmarshal(rec.Meta, &m)
	return m, err
}

// marshalWithoutID is the session's JSON without its id, for values bound
// to the id anyway (records, shared refresh results).
func marshalWithoutID(s *session) ([]byte, error) {
	c := *s
	c.ID = ""
	return json.Marshal(&c)
}
