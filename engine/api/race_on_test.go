//go:build race

package api

// raceEnabled: under the race detector sync.Pool drops buffers at random,
// so pooled buffers are reallocated and byte counts say nothing.
const raceEnabled = true
