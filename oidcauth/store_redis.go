package oidcauth

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-bff/caddy-bff/internal/bounded"
	"github.com/caddy-bff/caddy-bff/internal/redisconf"
)

// redisStore keeps sessions in Redis, shared by every gateway instance. The
// cookie carries only the random session id; keys and index members hold
// its hash, and values are sealed records (see record) bound to the id:
// neither the id nor a token nor a claim is readable from Redis. Each
// session expires with its idle timeout or lifetime, whichever comes first;
// per-subject and per-provider-session index sets let a back-channel logout
// find every session to end.
type redisStore struct {
	c        redis.UniversalClient
	reader   *redis.AutoPipeliner // the hot path's GET: c's auto-pipeliner, or nil (c itself)
	cfg      *redisconf.Resolved
	keys     *keyring
	now      func() time.Time
	idle     time.Duration
	lifetime time.Duration

	// decoded caches the last session decoded per key with the exact bytes
	// it came from: every request still reads Redis (a logout elsewhere
	// shows at once), but unchanged bytes skip opening and decoding. The
	// cache is keyed by the id's hash, so only a request carrying the id
	// itself (a preimage) finds an entry.
	decoded *bounded.Map[string, decodedSession]
}

type decodedSession struct {
	raw string
	s   *session
}

// asyncAutoPipelined is implemented by go-redis's standalone, Sentinel
// (failover) and Cluster clients (a Ring refuses; NewUniversalClient never
// builds one).
type asyncAutoPipelined interface {
	AsyncAutoPipeline() (*redis.AutoPipeliner, error)
}

// hotReader is what load sends its GET through: go-redis's auto-pipeliner
// (its deferred face, whose futures can be waited on with a context), so
// that the GETs of concurrent requests share round trips and syscalls
// instead of each taking a pooled connection; nil when the client has
// none (load then uses the client itself). The pipeliner belongs to the
// client (closing the client stops it) and is shared by every store on
// that client. Each GET still goes to Redis and is answered in order after
// every write this instance has finished: a logout anywhere shows on the
// next request.
func hotReader(c redis.UniversalClient) *redis.AutoPipeliner {
	if ap, ok := c.(asyncAutoPipelined); ok {
		if p, err := ap.AsyncAutoPipeline(); err == nil {
			return p
		}
	}
	return nil
}

// get reads key through the auto-pipeliner, bounded by ctx. The pipeliner
// runs its batches on a context of its own (go-redis documents that a
// command's context does not bound it), so a Redis that stops answering
// would hold the request for the pipeliner's dial retries and redirects,
// far longer than the store's operation timeout; WaitContext gives the
// request its error (a 503) when ctx ends, without a goroutine per GET,
// and the abandoned GET finishes in the background within the pipeliner's
// own bound.
func (rs *redisStore) get(ctx context.Context, key string) (string, error) {
	if rs.reader == nil {
		return rs.c.Get(ctx, key).Result()
	}
	cmd := redis.NewStringCmd(ctx, "get", key)
	if err := rs.reader.Submit(ctx, cmd).WaitContext(ctx); err != nil {
		return "", err // redis.Nil included: the caller tells it apart
	}
	return cmd.Val(), nil
}

// maxDecoded bounds the decode cache (entries of a few KiB).
const maxDecoded = 8192

func (rs *redisStore) keySession(hkey string) string { return rs.cfg.KeyPrefix + "s:" + hkey }
func (rs *redisStore) keyBySub(sub string) string {
	return rs.cfg.KeyPrefix + "bysub:" + digest("sub", sub)
}
func (rs *redisStore) keyBySID(sid string) string {
	return rs.cfg.KeyPrefix + "bysid:" + digest("sid", sid)
}

// load is the hot path: one GET.
func (rs *redisStore) load(ctx context.Context, value string) (*session, error) {
	ctx, cancel := rs.cfg.Ctx(ctx)
	defer cancel()
	if len(value) != sessionIDLen {
		return nil, errNoSession
	}
	hkey := hashID(value)
	raw, err := rs.get(ctx, rs.keySession(hkey))
	if errors.Is(err, redis.Nil) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	d, ok := rs.decoded.Get(hkey)
	if ok && d.raw == raw {
		return d.s, nil
	}
	s, err := decodeRecord(rs.keys, []byte(raw), value)
	if err != nil {
		return nil, errNoSession
	}
	if rs.idle > 0 {
		s.ident = s.identity(rs.idle, rs.lifetime)
	}
	rs.decoded.Put(hkey, decodedSession{raw: raw, s: s})
	return s, nil
}

func (rs *redisStore) save(ctx context.Context, s *session, create bool, until time.Time) (string, error) {
	ctx, cancel := rs.cfg.Ctx(ctx)
	defer cancel()
	raw, err := encodeRecord(rs.keys, s)
	if err != nil {
		return "", err
	}
	d := ttl(until, rs.now())
	key := rs.keySession(s.hkey())
	if !create {
		// XX: only while the session exists, so nothing revives a session
		// that a logout on any instance ended (logout wins over refresh).
		ok, err := rs.c.SetXX(ctx, key, raw, d).Result()
		if err != nil {
			return "", err
		}
		if !ok {
			return "", errSessionEnded
		}
		return s.ID, nil
	}
	// A plain pipeline, not MULTI: the keys live in different hash slots
	// on a Cluster, and go-redis splits a pipeline per node.
	_, err = rs.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, raw, d)
		for _, idx := range rs.indexes(s) {
			p.SAdd(ctx, idx, s.hkey())
			p.PExpire(ctx, idx, rs.lifetime)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return s.ID, nil
}

func (rs *redisStore) indexes(s *session) []string {
	idx := []string{rs.keyBySub(s.Subject)}
	if s.SID != "" {
		idx = append(idx, rs.keyBySID(s.SID))
	}
	return idx
}

func (rs *redisStore) remove(ctx context.Context, s *session, _ time.Time) error {
	ctx, cancel := rs.cfg.Ctx(ctx)
	defer cancel()
	_, err := rs.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, rs.keySession(s.hkey()))
		for _, idx := range rs.indexes(s) {
			p.SRem(ctx, idx, s.hkey())
		}
		return nil
	})
	return err
}

// removeSessions ends every session of a subject, or of a provider session
// when sid is set (back-channel logout), on every instance.
func (rs *redisStore) removeSessions(ctx context.Context, sub, sid string) (int, error) {
	ctx, cancel := rs.cfg.Ctx(ctx)
	defer cancel()
	idx := rs.keyBySub(sub)
	if sid != "" {
		idx = rs.keyBySID(sid)
	}
	members, err := rs.c.SMembers(ctx, idx).Result()
	if err != nil {
		return 0, err
	}
	// One DEL per key in a pipeline: a multi-key DEL would cross hash
	// slots on a Cluster.
	cmds, err := rs.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range members {
			p.Del(ctx, rs.keySession(m))
		}
		p.Del(ctx, idx)
		return nil
	})
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range cmds[:len(members)] {
		if c.(*redis.IntCmd).Val() > 0 {
			n++
		}
	}
	return n, nil
}

// sessionsOf lists the sessions of a subject from its index (their meta:
// no id, no token), one GET per session in a pipeline (Cluster-safe).
func (rs *redisStore) sessionsOf(ctx context.Context, sub string) ([]recordMeta, error) {
	ctx, cancel := rs.cfg.Ctx(ctx)
	defer cancel()
	members, err := rs.c.SMembers(ctx, rs.keyBySub(sub)).Result()
	if err != nil || len(members) == 0 {
		return nil, err
	}
	cmds, err := rs.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range members {
			p.Get(ctx, rs.keySession(m))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	var out []recordMeta
	for _, c := range cmds {
		raw, err := c.(*redis.StringCmd).Bytes()
		if err != nil {
			continue // ended since the index was read
		}
		if m, err := readMeta(raw); err == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// trimSessions ends a subject's oldest sessions beyond max, from its
// index, and reports how many it ended.
func (rs *redisStore) trimSessions(ctx context.Context, sub string, max int) (int, error) {
	ctx, cancel := rs.cfg.Ctx(ctx)
	defer cancel()
	idx := rs.keyBySub(sub)
	members, err := rs.c.SMembers(ctx, idx).Result()
	if err != nil || len(members) <= max {
		return 0, err
	}
	cmds, err := rs.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, m := range members {
			p.Get(ctx, rs.keySession(m))
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, err
	}
	type live struct {
		key     string
		created int64
	}
	var sessions []live
	var gone []string
	for i, c := range cmds {
		raw, err := c.(*redis.StringCmd).Bytes()
		m, merr := readMeta(raw)
		if err != nil || merr != nil {
			gone = append(gone, members[i]) // expired or ended: drop from the index
			continue
		}
		sessions = append(sessions, live{members[i], m.Created})
	}
	if len(sessions) <= max && len(gone) == 0 {
		return 0, nil
	}
	slices.SortFunc(sessions, func(a, b live) int { return cmp.Compare(b.created, a.created) })
	var ended []string
	if len(sessions) > max {
		for _, s := range sessions[max:] {
			ended = append(ended, s.key)
		}
	}
	_, err = rs.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range ended {
			p.Del(ctx, rs.keySession(k))
		}
		for _, k := range append(ended, gone...) {
			p.SRem(ctx, idx, k)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(ended), nil
}
