// Command loadgen is a gRPC load generator for Envoy ext_authz Check, standard library only
// (net/http, unencrypted HTTP/2), a drop-in replacement for bench/load.ts — same flags, same payload
// file, same one-line JSON result — that costs a fraction of its CPU on the load side and adds µs,
// not ms, of its own jitter to the latencies.
//
//	loadgen --target 127.0.0.1:9001 --payloads FILE --connections 4 --streams 32 \
//	        --duration 10 --warmup 2 [--rate 1000] [--path /pkg.Service/Method] [--v]
//
// FILE: JSON array of base64 gRPC-framed requests (5-byte prefix included), sent unchanged; request
// i carries payload i mod n. --rate 0: closed loop, connections×streams requests always in flight.
// --rate N: open loop, N requests/s in total on a fixed schedule (see openLoop). Like load.ts, a
// request counts when it completes inside the measured window (after the warm-up); it is ok when
// its grpc-status is 0. Output: {"rps","ok","failed","p50","p90","p99","p999","max","sent"},
// latencies in ms; --v adds diagnostics on stderr (send lateness, connections dialed).
//
// Built with Go 1.26+, each connection is an http.ClientConn: exactly --connections TCP
// connections, never redialed (a server that goes away turns every later request into a failure,
// as with load.ts), and a request beyond the server's concurrent-stream limit waits for a free
// stream. See dial_go124.go for older Go.
package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

const (
	checkPath = "/envoy.service.auth.v3.Authorization/Check"
	// shouldRateLimitPath: the same unary gRPC call shape (a RateLimitRequest per payload), so
	// envoyproxy/ratelimit is driven exactly like portcullis.
	shouldRateLimitPath = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
	deadline            = time.Second // grpc-timeout: 1S, also enforced here, as a gRPC client would
	drain               = 2 * time.Second
	// spinMargin: the open loop's scheduler wakes this long before a due time and yields until
	// then, to absorb the timer's own lateness.
	spinMargin = 50 * time.Microsecond
)

type result struct {
	RPS    float64 `json:"rps"`
	OK     int     `json:"ok"`
	Failed int     `json:"failed"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	P999   float64 `json:"p999"`
	Max    float64 `json:"max"`
	Sent   int64   `json:"sent"`
}

func main() {
	target := flag.String("target", "127.0.0.1:9001", "gRPC server `host:port`")
	payloadFile := flag.String("payloads", "", "JSON array of base64 gRPC-framed requests (required)")
	connections := flag.Int("connections", 4, "HTTP/2 connections")
	streams := flag.Int("streams", 32, "concurrent streams per connection (closed loop)")
	duration := flag.Float64("duration", 10, "measured `seconds`")
	warmup := flag.Float64("warmup", 2, "`seconds` of load before measuring")
	rate := flag.Float64("rate", 0, "requests/s in total, open loop (0: closed loop at full speed)")
	path := flag.String("path", checkPath, "gRPC method path; "+shouldRateLimitPath+" drives envoyproxy/ratelimit")
	verbose := flag.Bool("v", false, "diagnostics on stderr")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		fail("unexpected argument %q", flag.Arg(0))
	case *payloadFile == "":
		fail("--payloads FILE is required")
	case *connections < 1 || *streams < 1:
		fail("--connections and --streams must be >= 1")
	case !(*duration > 0) || !(*warmup >= 0) || !(*rate >= 0) || math.IsInf(*rate, 0):
		fail("--duration must be > 0, --warmup and --rate >= 0")
	}
	payloads, err := loadPayloads(*payloadFile)
	if err != nil {
		fail("%v", err)
	}

	l := &loader{
		url:      "http://" + *target + *path,
		payloads: payloads,
		header: http.Header{
			"Content-Type": {"application/grpc"},
			"Te":           {"trailers"},
			"Grpc-Timeout": {"1S"},
		},
	}
	var hardStop context.CancelFunc
	l.ctx, hardStop = context.WithCancel(context.Background())
	// Open every connection up front and send one request on each (not counted): a dead target
	// fails here, and the server's SETTINGS (its stream limit) are known before the clock starts.
	for range *connections {
		rt, err := dial(l.ctx, l.newTransport(*target), *target)
		c := &conn{rt, make(chan struct{}, 1)}
		c.sendTurn <- struct{}{}
		if err == nil {
			var ok bool
			if ok, err = l.check(c, payloads[0]); !ok && !isTransport(err) {
				if len(l.conns) == 0 {
					fmt.Fprintf(os.Stderr, "loadgen: warning: first request: %v\n", err)
				}
				err = nil // any answer will do
			}
		}
		if err != nil {
			fail("%s: first request failed: %v", *target, err)
		}
		l.conns = append(l.conns, c)
	}

	start := time.Now()
	win := window{start.Add(seconds(*warmup)), start.Add(seconds(*warmup + *duration))}
	time.AfterFunc(win.to.Add(drain).Sub(start), hardStop) // in-flight requests get at most 2 s
	var lat []int64
	var failed int
	var sent int64
	if *rate > 0 {
		lat, failed, sent = l.openLoop(*rate, start, win, *verbose)
	} else {
		lat, failed, sent = l.closedLoop(*streams, win)
	}
	hardStop()

	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[min(len(lat)-1, int(math.Floor(p/100*float64(len(lat)))))]) / 1e6
	}
	out, _ := json.Marshal(result{
		RPS: float64(len(lat)) / *duration, OK: len(lat), Failed: failed,
		P50: pct(50), P90: pct(90), P99: pct(99), P999: pct(99.9), Max: pct(100), Sent: sent,
	})
	fmt.Printf("%s\n", out)
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "loadgen: %d failed, first: %v\n", failed, *l.firstErr.Load())
	}
	if dials := l.dials.Load(); *verbose || dials > int64(len(l.conns)) { // more: see dial_go124.go
		fmt.Fprintf(os.Stderr, "loadgen: %d TCP connections dialed for --connections %d, GOMAXPROCS %d\n",
			dials, len(l.conns), runtime.GOMAXPROCS(0))
	}
}

type loader struct {
	url      string
	header   http.Header // shared by all requests, read-only
	payloads [][]byte
	conns    []*conn
	ctx      context.Context // cancelled at the hard stop
	dials    atomic.Int64
	firstErr atomic.Pointer[error]
}

// newTransport returns a transport for unencrypted HTTP/2 with prior knowledge (h2c), as Envoy
// talks to a gRPC cluster, that counts its TCP dials and corks its writes. Without a
// SETTINGS_MAX_CONCURRENT_STREAMS from the server (grpc-js sends none), Go allows 1000 concurrent
// streams per connection, far above connections×streams.
func (l *loader) newTransport(target string) *http.Transport {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	dialer := &net.Dialer{Timeout: 2 * time.Second}
	return &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			l.dials.Add(1)
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return newCorkedConn(c), nil
		},
		DisableCompression: true, // no accept-encoding header
	}
}

// conn is one HTTP/2 connection. Its requests take turns to write, in order: when the server
// stops reading for a while and its flow-control window runs out, Go's client wakes every stream
// waiting for window at once and whichever runs first wins, so some requests starve past their
// deadline (Node's client sends in order).
type conn struct {
	rt       http.RoundTripper
	sendTurn chan struct{} // one token; a channel's waiters are served first come, first served
}

// check sends one Check on c and returns whether it ended with grpc-status 0.
func (l *loader) check(c *conn, payload []byte) (bool, error) {
	ctx, cancel := context.WithTimeout(l.ctx, deadline)
	defer cancel()
	select {
	case <-c.sendTurn:
	case <-ctx.Done():
		return false, l.failure(transportError{ctx.Err()})
	}
	var passed atomic.Bool
	passTurn := func() {
		if passed.CompareAndSwap(false, true) {
			c.sendTurn <- struct{}{}
		}
	}
	trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { passTurn() }}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodPost, l.url, bytes.NewReader(payload))
	if err != nil {
		passTurn()
		return false, l.failure(err)
	}
	req.Header = l.header
	resp, err := c.rt.RoundTrip(req)
	passTurn() // if the request failed before its body was written
	if err != nil {
		return false, l.failure(transportError{err})
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return false, l.failure(transportError{err})
	}
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" {
		status = resp.Header.Get("Grpc-Status") // trailers-only response
	}
	if status != "0" {
		msg := resp.Trailer.Get("Grpc-Message") + resp.Header.Get("Grpc-Message")
		return false, l.failure(fmt.Errorf("HTTP %d, grpc-status %q %s", resp.StatusCode, status, msg))
	}
	return true, nil
}

func (l *loader) failure(err error) error {
	l.firstErr.CompareAndSwap(nil, &err)
	return err
}

// closedLoop runs connections×streams workers, each sending its next request as soon as the
// previous one is answered, until the end of the window.
func (l *loader) closedLoop(streams int, win window) (lat []int64, failed int, sent int64) {
	type worker struct {
		lat    []int64
		failed int
	}
	workers := make([]worker, len(l.conns)*streams)
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wk, c := &workers[w], l.conns[w%len(l.conns)]
		wk.lat = make([]int64, 0, 4096)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := time.Now(); t.Before(win.to); {
				i := next.Add(1) - 1
				ok, _ := l.check(c, l.payloads[i%int64(len(l.payloads))])
				end := time.Now()
				if win.has(end) {
					if ok {
						wk.lat = append(wk.lat, int64(end.Sub(t)))
					} else {
						wk.failed++
					}
				}
				t = end
			}
		}()
	}
	wg.Wait()
	for _, wk := range workers {
		lat = append(lat, wk.lat...)
		failed += wk.failed
	}
	return lat, failed, next.Load()
}

// openLoop starts request i at start + i/rate exactly, on connection i mod connections, whatever
// the answers do: due times are computed from start (no drift), a late request is sent at once, and
// every latency is measured from the due time, so a stalled server is not hidden by a loader that
// waited for it (coordinated omission).
func (l *loader) openLoop(rate float64, start time.Time, win window, verbose bool) (lat []int64, failed int, sent int64) {
	total := int(math.Ceil(rate * win.to.Sub(start).Seconds())) // every i with due time < win.to
	const uncounted, failedMark = -2, -1
	outcome := make([]int64, total) // per request: latency ns, failedMark, or uncounted
	lateness := make([]int64, total)
	for i := range outcome {
		outcome[i] = uncounted
	}
	var wg sync.WaitGroup
	sleep := newSleeper()
	for i := range total {
		due := start.Add(time.Duration(float64(i) * 1e9 / rate))
		// The timer wakes us ~35 µs late in a VM: wake a bit early and yield until due.
		sleep(due.Add(-spinMargin))
		for time.Now().Before(due) {
			runtime.Gosched()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			lateness[i] = int64(time.Since(due))
			ok, _ := l.check(l.conns[i%len(l.conns)], l.payloads[i%len(l.payloads)])
			end := time.Now()
			if !win.has(end) {
				return
			}
			if ok {
				outcome[i] = int64(end.Sub(due))
			} else {
				outcome[i] = failedMark
			}
		}()
		runtime.Gosched() // let it send its frames before we re-arm the timer
	}
	wg.Wait()
	lat = make([]int64, 0, total)
	for _, o := range outcome {
		switch {
		case o >= 0:
			lat = append(lat, o)
		case o == failedMark:
			failed++
		}
	}
	if verbose {
		slices.Sort(lateness)
		fmt.Fprintf(os.Stderr, "loadgen: send lateness µs p50 %.1f p99 %.1f max %.1f\n",
			float64(lateness[total/2])/1e3, float64(lateness[total*99/100])/1e3, float64(lateness[total-1])/1e3)
	}
	return lat, failed, int64(total)
}

// corkedConn coalesces writes. Go's HTTP/2 client flushes the HEADERS and the DATA frame of every
// request separately: two syscalls and two TCP segments per request, which costs the server a
// read each (Node's client writes ~20 requests per writev). Write only appends to a buffer, and a
// writer goroutine sends all that is pending in one syscall as soon as it runs — when the
// goroutines writing frames block — so no timer delays anything.
type corkedConn struct {
	net.Conn
	mu         sync.Mutex
	buf, spare []byte
	err        error
	wake, done chan struct{}
	closeOnce  sync.Once
}

func newCorkedConn(c net.Conn) *corkedConn {
	cc := &corkedConn{Conn: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go cc.writer()
	return cc
}

func (c *corkedConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	err := c.err
	if err == nil {
		c.buf = append(c.buf, p...)
	}
	c.mu.Unlock()
	if err != nil {
		return 0, err
	}
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (c *corkedConn) writer() {
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		// Let the goroutines that are ready to run (others about to write) go first.
		runtime.Gosched()
		c.mu.Lock()
		out := c.buf
		c.buf, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		_, err := c.Conn.Write(out)
		c.mu.Lock()
		c.spare = out
		if err != nil && c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
		if err != nil {
			c.Close() // the client's reader then fails too
			return
		}
	}
}

func (c *corkedConn) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = net.ErrClosed
		}
		c.mu.Unlock()
		close(c.done)
	})
	return c.Conn.Close()
}

// window is the measured interval [from, to).
type window struct{ from, to time.Time }

func (w window) has(t time.Time) bool { return !t.Before(w.from) && t.Before(w.to) }

type transportError struct{ error }

func (e transportError) Unwrap() error { return e.error }

func isTransport(err error) bool { return errors.As(err, new(transportError)) }

// loadPayloads reads the JSON array of base64 strings and checks each one's gRPC framing.
func loadPayloads(file string) ([][]byte, error) {
	raw, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var encoded []string
	if err := json.Unmarshal(raw, &encoded); err != nil {
		return nil, fmt.Errorf("%s: want a JSON array of base64 strings: %v", file, err)
	}
	if len(encoded) == 0 {
		return nil, fmt.Errorf("%s: no payloads", file)
	}
	payloads := make([][]byte, len(encoded))
	for i, s := range encoded {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%s: payload %d: %v", file, i, err)
		}
		if len(b) < 5 || int(binary.BigEndian.Uint32(b[1:5])) != len(b)-5 {
			return nil, fmt.Errorf("%s: payload %d is not one gRPC-framed message", file, i)
		}
		payloads[i] = b
	}
	return payloads, nil
}

// sleepUntil sleeps until t with Go's timers.
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "loadgen: "+format+"\n", args...)
	os.Exit(2)
}
