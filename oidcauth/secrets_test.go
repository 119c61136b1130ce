package oidcauth

import (
	"strings"
	"testing"
)

// Item 13 of issue 9: no config error repeats a secret, whether the
// Caddyfile parser, placeholder resolution or validation reports it.
func TestConfigErrorsNeverEchoSecrets(t *testing.T) {
	for _, tc := range []struct {
		name, block, secret string
	}{
		{"client_secret with a space", `oidc_auth {
			issuer https://id.example.com
			client_id c
			client_secret correct horse-battery-staple
			session {
				keys ` + goodKey + `
			}
		}`, "horse-battery-staple"},
		{"client_secret holding braces", `oidc_auth {
			issuer https://id.example.com
			client_id c
			client_secret "s3cr{et-part-of-the-secret}x"
			session {
				keys ` + goodKey + `
			}
		}`, "et-part-of-the-secret"},
		{"session key holding braces", `oidc_auth {
			issuer https://id.example.com
			client_id c
			session {
				keys "0123456789abcdef{0123456789abcdef-secret}"
			}
		}`, "0123456789abcdef-secret"},
		{"redis password with a space", `oidc_auth {
			issuer https://id.example.com
			client_id c
			session {
				keys ` + goodKey + `
				redis {
					password correct horse-battery-staple
				}
			}
		}`, "horse-battery-staple"},
		{"redis password holding braces", `oidc_auth {
			issuer https://id.example.com
			client_id c
			session {
				keys ` + goodKey + `
				redis {
					password "pw{the-redis-secret}"
				}
			}
		}`, "the-redis-secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := provisionFromCaddyfile(t, tc.block)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), tc.secret) {
				t.Fatalf("the error repeats the secret: %v", err)
			}
		})
	}
}
