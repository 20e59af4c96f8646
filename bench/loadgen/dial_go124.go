//go:build !go1.26

package main

import (
	"context"
	"net/http"
)

// dial, before Go 1.26 (no http.ClientConn): a Transport restricted to one connection, opened by
// the first request. Caveat: past the server's concurrent-stream limit (1000 when it advertises
// none, as grpc-js), net/http dials another connection; main reports extra dials on stderr.
// StrictMaxConcurrentRequests would queue instead, but stalls (golang/go#70809).
func dial(_ context.Context, tr *http.Transport, _ string) (http.RoundTripper, error) {
	tr.MaxConnsPerHost = 1
	tr.MaxIdleConnsPerHost = 1
	return tr, nil
}
