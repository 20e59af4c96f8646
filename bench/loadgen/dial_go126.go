//go:build go1.26

package main

import (
	"context"
	"net/http"
)

// dial opens one HTTP/2 connection as an http.ClientConn (Go 1.26): exactly one TCP connection,
// never redialed, and beyond the server's concurrent-stream limit a request waits for a free stream.
func dial(ctx context.Context, tr *http.Transport, target string) (http.RoundTripper, error) {
	return tr.NewClientConn(ctx, "http", target)
}
