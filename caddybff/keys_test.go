package caddybff

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"encoding/base64"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-bff/caddy-bff/internal/signkey"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func TestLoadSigningKey(t *testing.T) {
	k := keysOnce()
	ecKey, rsaKey := k.ec.(*ecdsa.PrivateKey), k.rsa.(*rsa.PrivateKey)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(keyFile, []byte(pkcs8PEM(t, k.ec)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BFF_TEST_KEY", pkcs8PEM(t, k.ed))
	t.Setenv("BFF_TEST_EMPTY", "")

	tests := []struct {
		name        string
		value       string
		allowPublic bool
		alg         string
		private     bool
		wantErr     string
	}{
		{name: "ec pkcs8", value: pkcs8PEM(t, k.ec), alg: "ES256", private: true},
		{name: "ec sec1 after ec parameters", value: sec1PEM(t, ecKey), alg: "ES256", private: true},
		{name: "rsa pkcs1", value: pkcs1PEM(rsaKey), alg: "RS256", private: true},
		{name: "rsa pkcs8", value: pkcs8PEM(t, k.rsa), alg: "RS256", private: true},
		{name: "ed25519 pkcs8", value: pkcs8PEM(t, k.ed), alg: "EdDSA", private: true},
		{name: "surrounding white space", value: "\n  " + pkcs8PEM(t, k.ec) + "\n", alg: "ES256", private: true},
		{name: "file path", value: keyFile, alg: "ES256", private: true},
		{name: "file placeholder", value: "{file." + keyFile + "}", alg: "ES256", private: true},
		{name: "env placeholder", value: "{env.BFF_TEST_KEY}", alg: "EdDSA", private: true},
		{name: "public key where allowed", value: publicPEM(t, k.rsa), allowPublic: true, alg: "RS256"},

		{name: "public key to sign", value: publicPEM(t, k.ec), wantErr: "need a private key"},
		{name: "ec p-384", value: pkcs8PEM(t, k.p384), wantErr: "need P-256"},
		{name: "rsa 1024", value: pkcs1PEM(k.rsa1024.(*rsa.PrivateKey)), wantErr: "RSA key is 1024 bits"},
		{name: "encrypted pkcs8", value: pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2, 3}), wantErr: "encrypted"},
		{name: "legacy encrypted pem", value: "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END RSA PRIVATE KEY-----\n", wantErr: "encrypted"},
		{name: "certificate only", value: pemBlock("CERTIFICATE", []byte{1, 2, 3}), wantErr: "no PEM key block"},
		{name: "truncated pem", value: strings.Join(strings.Split(pkcs8PEM(t, k.ec), "\n")[:2], "\n"), wantErr: "no PEM key block"},
		{name: "corrupt der", value: pemBlock("PRIVATE KEY", []byte{0x30, 0x03, 1, 2, 3}), wantErr: "parsing private key"},
		{name: "missing file", value: filepath.Join(dir, "nope.pem"), wantErr: "no such file"},
		{name: "missing file placeholder", value: "{file." + filepath.Join(dir, "nope.pem") + "}", wantErr: "resolving placeholders"},
		{name: "unset env", value: "{env.BFF_TEST_UNSET_XYZ}", wantErr: "resolving placeholders"},
		{name: "empty env", value: "{env.BFF_TEST_EMPTY}", wantErr: "resolving placeholders"},
		{name: "unknown placeholder", value: "{http.request.host}", wantErr: "resolving placeholders"},
		{name: "base64 key without armour", value: "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg\nAAAA", wantErr: "neither PEM nor a file path"},
		{name: "empty", value: "", wantErr: "neither PEM nor a file path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, err := signkey.Load(tt.value, tt.allowPublic)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				// Errors must never echo key material.
				if strings.Contains(err.Error(), "MII") || strings.Contains(err.Error(), "BEGIN") {
					t.Fatalf("error echoes the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if key.Alg() != tt.alg {
				t.Errorf("alg = %s, want %s", key.Alg(), tt.alg)
			}
			if (key.Private != nil) != tt.private {
				t.Errorf("private = %v, want %v", key.Private != nil, tt.private)
			}
			if raw, err := base64.RawURLEncoding.DecodeString(key.KID); err != nil || len(raw) != 32 {
				t.Errorf("kid %q is not a base64url SHA-256 thumbprint", key.KID)
			}
		})
	}
}

// The kid of a private key and of its public key are the same, whatever
// the PEM form, so bff_jwks may be given either.
func TestKIDIsStableAcrossForms(t *testing.T) {
	k := keysOnce()
	forms := [][]string{
		{pkcs8PEM(t, k.ec), sec1PEM(t, k.ec.(*ecdsa.PrivateKey)), publicPEM(t, k.ec)},
		{pkcs8PEM(t, k.rsa), pkcs1PEM(k.rsa.(*rsa.PrivateKey)), publicPEM(t, k.rsa)},
		{pkcs8PEM(t, k.ed), publicPEM(t, k.ed)},
	}
	seen := map[string]bool{}
	for _, group := range forms {
		var kid string
		for i, v := range group {
			key, err := signkey.Load(v, true)
			if err != nil {
				t.Fatal(err)
			}
			if i == 0 {
				kid = key.KID
			} else if key.KID != kid {
				t.Errorf("form %d: kid %s, want %s", i, key.KID, kid)
			}
		}
		if seen[kid] {
			t.Errorf("kid %s shared by different keys", kid)
		}
		seen[kid] = true
	}
}

// RFC 7638 §3.1's example key and thumbprint.
func TestThumbprintRFC7638(t *testing.T) {
	n, err := base64.RawURLEncoding.DecodeString("0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw")
	if err != nil {
		t.Fatal(err)
	}
	key, err := signkey.New(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: 65537})
	if err != nil {
		t.Fatal(err)
	}
	if want := "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"; key.KID != want {
		t.Errorf("kid = %s, want %s", key.KID, want)
	}
}

// Item 13 of issue 9: a signing_key that is neither PEM nor a readable
// file is never repeated in the error (it may be the key itself, without
// its armour); a value that is clearly a path is named.
func TestSigningKeyErrorsNeverEchoTheKey(t *testing.T) {
	const der = "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgevZzL1gdAFr88hb2OF/2NxApJCzGCEDdfSp6VQO30hyhRANCAAQRWz+jn65BtOMvdyHKcvjBeBSDZH2r1RTwjmYSi9R/zpBnuQ4EiMnCqfMPWiZqB4QdbAd0E7oH50VpuZ1P087G"
	for _, tc := range []struct {
		name, value, want, notWant string
	}{
		{"base64 DER key", der, "not shown", der[20:40]},
		{"base64 DER key with braces", "x{" + der + "}y", "not shown", der[20:40]},
		{"short secret word", "hunter2-secret", "not shown", "hunter2"},
		{"JWK JSON", `{"kty":"EC","d":"evZzL1gdAFr88hb2OF_2NxApJCzGCEDdfSp6VQO30hw"}`, "not shown", "evZzL1gd"},
		{"missing file, clearly a path", "/etc/bff/no-such-signing-key.pem", "/etc/bff/no-such-signing-key.pem", ""},
		{"missing relative file", "./keys/no-such.pem", "./keys/no-such.pem", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := signkey.Load(tc.value, false)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			if tc.notWant != "" && strings.Contains(err.Error(), tc.notWant) {
				t.Errorf("the error repeats the value: %q", err)
			}
		})
	}
	// The Caddyfile parsers do not repeat a stray token either.
	for _, block := range []string{
		"bff_token {\n mode mint\n signing_key secret-first-half secret-second-half\n}",
		"bff_jwks {\n signing_key secret-first-half secret-second-half\n}",
		"bff_jwks {\n previous_key secret-first-half secret-second-half\n}",
	} {
		var err error
		d := caddyfile.NewTestDispenser(block)
		if strings.HasPrefix(block, "bff_token") {
			err = new(Token).UnmarshalCaddyfile(d)
		} else {
			err = new(JWKS).UnmarshalCaddyfile(d)
		}
		if err == nil || strings.Contains(err.Error(), "secret-second-half") || strings.Contains(err.Error(), "secret-first-half") {
			t.Errorf("%q: %v", block, err)
		}
	}
}
