//go:build !linux

package main

import "time"

// newSleeper: portable fallback, with Go's timer granularity (up to ~1 ms late on Linux).
func newSleeper() func(time.Time) { return sleepUntil }
