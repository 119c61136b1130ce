//go:build !bffbench

package main

import (
	"context"
	"errors"
)

func forgeSessions(context.Context, string, string, int) ([]string, error) {
	return nil, errors.New("-sessions above 1 needs the bench-only session forge: go run -tags bffbench ./cmd/loadbench (make bench does)")
}
