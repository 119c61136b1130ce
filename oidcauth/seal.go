package oidcauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// MinKeyLen is the shortest accepted session key, in bytes.
const MinKeyLen = 32

// kidLen is the length of a key id in a sealed value (base64url chars).
const kidLen = 8

var (
	errUnknownKey = errors.New("sealed value names an unknown key")
	errMalformed  = errors.New("malformed sealed value")
	errOpen       = errors.New("sealed value does not authenticate")
)

// sealKey is one AES-256-GCM key derived from an operator secret.
type sealKey struct {
	id   string
	aead cipher.AEAD
}

// keyring seals with its first key and opens with any key, found by the
// key id a sealed value carries, so rotation never tries every key.
type keyring struct {
	keys []sealKey
}

// newKeyring derives one AEAD per secret with HKDF-SHA256 (RFC 5869), so
// that operator secrets of any shape (passphrases, base64 blobs) become
// uniform 256-bit keys, and a key id that reveals nothing about the key.
func newKeyring(secrets []string) (*keyring, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no keys")
	}
	kr := new(keyring)
	seen := make(map[string]int)
	for i, s := range secrets {
		if len(s) < MinKeyLen {
			return nil, fmt.Errorf("key %d is %d bytes, need at least %d", i+1, len(s), MinKeyLen)
		}
		k, err := hkdf.Key(sha256.New, []byte(s), []byte("caddy-bff"), "session-seal v1", 32)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		kid, err := hkdf.Key(sha256.New, []byte(s), []byte("caddy-bff"), "key-id v1", 6)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		id := base64.RawURLEncoding.EncodeToString(kid)
		if j, dup := seen[id]; dup {
			return nil, fmt.Errorf("key %d repeats key %d", i+1, j)
		}
		seen[id] = i + 1
		kr.keys = append(kr.keys, sealKey{id: id, aead: aead})
	}
	return kr, nil
}

// seal encrypts and authenticates plaintext for one purpose; the purpose is
// bound as additional data, so a login cookie never opens as a session.
// Format: <kid>.<base64url(nonce || ciphertext || tag)>.
func (kr *keyring) seal(purpose string, plaintext []byte) string {
	k := kr.keys[0]
	ns := k.aead.NonceSize()
	buf := make([]byte, ns, ns+len(plaintext)+k.aead.Overhead())
	_, _ = rand.Read(buf) // crypto/rand.Read never fails (Go 1.24+)
	buf = k.aead.Seal(buf, buf[:ns], plaintext, []byte(purpose))
	var sb strings.Builder
	sb.Grow(kidLen + 1 + base64.RawURLEncoding.EncodedLen(len(buf)))
	sb.WriteString(k.id)
	sb.WriteByte('.')
	sb.WriteString(base64.RawURLEncoding.EncodeToString(buf))
	return sb.String()
}

// open reverses seal. It fails closed on any malformed, tampered, truncated
// or foreign value, and on values sealed for another purpose.
func (kr *keyring) open(purpose, sealed string) ([]byte, error) {
	if len(sealed) < kidLen+1 || sealed[kidLen] != '.' {
		return nil, errMalformed
	}
	kid := sealed[:kidLen]
	var k *sealKey
	for i := range kr.keys {
		if kr.keys[i].id == kid {
			k = &kr.keys[i]
			break
		}
	}
	if k == nil {
		return nil, errUnknownKey
	}
	raw, err := base64.RawURLEncoding.DecodeString(sealed[kidLen+1:])
	if err != nil {
		return nil, errMalformed
	}
	ns := k.aead.NonceSize()
	if len(raw) < ns+k.aead.Overhead() {
		return nil, errMalformed
	}
	pt, err := k.aead.Open(raw[ns:ns], raw[:ns], raw[ns:], []byte(purpose))
	if err != nil {
		return nil, errOpen
	}
	return pt, nil
}
