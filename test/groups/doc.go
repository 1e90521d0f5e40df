// Package groups tests sluice's group coordinator end to end: the real
// bin/sluice (SLUICE_BIN, default <repo>/bin/sluice, built by make build)
// with franz-go consumer groups running as separate processes (this test
// binary re-executed), so a consumer crash is a real SIGKILL. It covers the
// classic protocol with the eager range and cooperative-sticky balancers,
// KIP-848 consumer groups, a broker SIGKILL mid-group, and bad input.
package groups
