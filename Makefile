# caddy-bff: `make demo` runs the demo portal, `make test` runs every test.
SHELL := /bin/bash
GO    ?= go
export GOFLAGS ?= -mod=mod

.PHONY: all build test deps vet unit integration fuzz bench demo clean

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

# fuzz runs each fuzz target briefly (seeds always run in `unit`).
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzOpen -fuzztime 20s ./oidcauth
	$(GO) test -run '^$$' -fuzz FuzzReturnTo -fuzztime 20s ./oidcauth

test: deps vet unit integration

bench:
	cd integration && $(GO) run ./cmd/loadbench

demo:
	cd integration && $(GO) run ./cmd/demo

clean:
	rm -rf bin
