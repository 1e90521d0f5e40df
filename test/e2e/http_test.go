package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHTTPEndpoints: sluice's --http listener serves health, readiness and
// Prometheus metrics (DESIGN.md, Observability). sluice only: Kafka has no
// such listener.
func TestHTTPEndpoints(t *testing.T) {
	requireOwnBroker(t, "sluice's --http listener")
	b := Shared(t)
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := client.Get("http://" + b.HTTPAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		return resp.StatusCode, string(body)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := get(path); code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200 (%.200s)", path, code, body)
		}
	}
	code, body := get("/metrics")
	if code != http.StatusOK || !strings.Contains(body, "# TYPE ") {
		t.Errorf("GET /metrics: status %d, body %.300q; want 200 and the Prometheus text format", code, body)
	}
}
