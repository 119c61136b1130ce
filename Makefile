# caddy-bff: `make demo` runs the demo portal, `make test` runs every test.
SHELL := /bin/bash
GO    ?= go
export GOFLAGS ?= -mod=mod

.PHONY: all build test deps vet unit integration fuzz bench bench-sessions bench-peers demo clean validate-example

all: build

build:
	$(GO) build -o bin/caddy ./cmd/caddy

# deps installs what the tests need when it is missing (Debian).
deps:
	@./.ci/deps

vet:
	gofmt -l . | tee /dev/stderr | (! read)
	$(GO) vet ./...
	cd integration && $(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

integration:
	cd integration && $(GO) test -race -count=1 -timeout 20m ./...

# fuzz runs each fuzz target briefly (their seeds run in `unit` too).
FUZZTIME ?= 15s
FUZZ_TARGETS := \
	./oidcauth:FuzzOpen ./oidcauth:FuzzReturnTo ./oidcauth:FuzzCaddyfile \
	./oidcauth:FuzzReadSessionCookie ./oidcauth:FuzzStripCookies \
	./scopeauthz:FuzzCheckPath ./scopeauthz:FuzzMatch ./scopeauthz:FuzzCaddyfile \
	./caddybff:FuzzCaddyfile ./caddybff:FuzzAppsFile ./caddybff:FuzzAppsCaddyfile \
	./caddybff:FuzzParseRate ./caddybff:FuzzRateLimitCaddyfile
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# validate-example runs README's `caddy validate` of Caddyfile.example
# with throwaway secrets and key files.
validate-example:
	@./.ci/validate-example

test: deps vet unit validate-example integration

# bench: the same browser requests (session cookie included) to a bare
# reverse_proxy (A) and to SPEC §9's chain (B: oidc_auth, scope_authz with
# 20 rules, bff_rate_limit, bff_token mint), side by side in one run, for
# the cookie, memory and redis session stores. Gates on the median of the
# per-round ratios: cookie >= 0.95, redis >= 0.90 (memory is reported).
# Every variant runs; the target fails at the end if any gate failed.
bench:
	@cd integration && fail=0; \
	$(GO) run ./cmd/loadbench -a-cookie -store cookie -min-ratio 0.95 || fail=1; \
	$(GO) run ./cmd/loadbench -a-cookie -store memory -min-ratio 0 || fail=1; \
	$(GO) run ./cmd/loadbench -a-cookie -store redis -min-ratio 0.90 || fail=1; \
	exit $$fail

# bench-sessions: the same chain with many distinct users (1,000 and
# 100,000 sessions the benchmark seals itself with B's session key: the
# bffbench build tag compiles that forge into the load generator only),
# for the cookie and redis stores, so the caches of opened sessions and
# minted tokens (4,096 entries each) miss as they do in production.
# Reports only.
bench-sessions:
	@cd integration && for n in 1000 100000; do for st in cookie redis; do \
		$(GO) run -tags bffbench ./cmd/loadbench -a-cookie -store $$st -sessions $$n -min-ratio 0 || exit 1; \
	done; done

# bench-peers: peers in the same run: our chain (cookie store),
# oauth2-proxy v7.15.6 and caddy-security v1.1.64 (on the Caddy go.mod
# pins), each as site B against the same bare reverse_proxy, provider,
# upstream and load, in one table (req/s, p50/p99, proxy CPU µs/req,
# ratio to bare). The peers are built from the Go module proxy the first
# time and kept in integration/.peers. Reports only; not part of `test`.
bench-peers:
	cd integration && $(GO) run ./cmd/loadbench -a-cookie -peer chain,oauth2-proxy,caddy-security -min-ratio 0

demo:
	cd integration && $(GO) run ./cmd/demo

clean:
	rm -rf bin
