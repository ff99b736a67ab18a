// Package httpjson writes JSON answers over HTTP: one writer for the ops
// server (package ops) and the sandbox's admin API (package rpctest).
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write writes v as an indented JSON body with status. The answer is marked
// application/json and not to be cached: every body is the state of now.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
