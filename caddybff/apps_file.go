package caddybff

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
)

// readAppsFile reads and decodes an applications file. Errors name the
// file, and the application (by position and name) when one is at fault.
func readAppsFile(path string) ([]App, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading applications file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxAppsFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading applications file %s: %w", path, err)
	}
	if len(data) > maxAppsFileSize {
		return nil, fmt.Errorf("%s: applications file is larger than %d bytes", path, maxAppsFileSize)
	}
	return parseAppsFile(path, data)
}

// parseAppsFile decodes an applications file's content: an object with
// just an "applications" array, or a bare array.
func parseAppsFile(path string, data []byte) ([]App, error) {
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF")) // a UTF-8 BOM some editors write
	if !json.Valid(data) {
		var v any
		return nil, fmt.Errorf("%s: %s", path, jsonError(data, json.Unmarshal(data, &v)))
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(data, &raws); err != nil || raws == nil {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(data, &top); err != nil || top == nil {
			return nil, fmt.Errorf("%s: want {\"applications\": [...]} or an array of applications", path)
		}
		for _, k := range slices.Sorted(maps.Keys(top)) {
			if k != "applications" {
				return nil, fmt.Errorf("%s: unknown field %q: the file holds {\"applications\": [...]} or a bare array", path, k)
			}
		}
		if err := json.Unmarshal(top["applications"], &raws); err != nil || raws == nil {
			return nil, fmt.Errorf("%s: want an \"applications\" array", path)
		}
	}
	apps := make([]App, len(raws))
	for i, raw := range raws {
		if err := apps[i].decode(raw); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, fileAppLabel(i, apps[i].Name), err)
		}
	}
	return apps, nil
}

// fileAppLabel names the i-th application of a file in errors.
func fileAppLabel(i int, name string) string {
	if name == "" {
		return fmt.Sprintf("application %d", i+1)
	}
	return fmt.Sprintf("application %d (%q)", i+1, name)
}

// jsonError describes a decoding error with its line and column.
func jsonError(data []byte, err error) string {
	off := int64(-1)
	if syn, ok := errors.AsType[*json.SyntaxError](err); ok {
		off = syn.Offset
	} else if typ, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		off = typ.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return "invalid JSON: " + err.Error()
	}
	// Offset counts the bytes read, the offending one included.
	at := max(off-1, 0)
	before := data[:at]
	line := bytes.Count(before, []byte("\n")) + 1
	col := at - int64(bytes.LastIndexByte(before, '\n'))
	return fmt.Sprintf("invalid JSON at line %d, column %d: %v", line, col, err)
}
