//go:build race

package shard

// raceEnabled: under the race detector sync.Pool drops buffers at random,
// so pooled buffers are reallocated and byte counts say nothing.
const raceEnabled = true
