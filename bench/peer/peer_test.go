package peer

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParsePerfSummary(t *testing.T) {
	out := `Option --producer-props has been deprecated
1045521 records sent, 209104.2 records/sec (204.20 MB/sec), 120.1 ms avg latency, 400.0 ms max latency.
2000000 records sent, 53908.355795 records/sec (52.64 MB/sec), 46.72 ms avg latency, 778.00 ms max latency, 21 ms 50th, 135 ms 95th, 162 ms 99th, 167 ms 99.9th.
`
	var r PerfResult
	if !parsePerfSummary(out, &r) {
		t.Fatal("summary not found")
	}
	want := PerfResult{Records: 2000000, RecordsPerSec: 53908.355795, MiBPerSec: 52.64, AvgMs: 46.72, MaxMs: 778, P50Ms: 21, P95Ms: 135, P99Ms: 162, P999Ms: 167}
	if r != want {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}
	if parsePerfSummary("Exception in thread main", &r) {
		t.Fatal("found a summary in an error")
	}
}

func TestScriptDefaultAndProperties(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "peer")
	os.WriteFile(script, []byte("KAFKA_VERSION=\"${KAFKA_PEER_VERSION:-4.3.1}\"\nHEAP=\"${KAFKA_PEER_HEAP:-1g}\"\n"), 0o755)
	if v := ScriptDefault(script, "KAFKA_PEER_VERSION"); v != "4.3.1" {
		t.Errorf("version %q", v)
	}
	if v := ScriptDefault(script, "KAFKA_PEER_HEAP"); v != "1g" {
		t.Errorf("heap %q", v)
	}
	props := filepath.Join(dir, "server.properties")
	os.WriteFile(props, []byte(properties(map[string]string{"b": "2", "a": "1"})+"# comment\n\n"), 0o644)
	got, err := readProperties(props)
	if err != nil || len(got) != 2 || got["a"] != "1" || got["b"] != "2" {
		t.Fatalf("%v %v", got, err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := FreePort(true)
	if err != nil || p <= 0 {
		t.Fatalf("%d %v", p, err)
	}
}

func TestLogExcerpt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	os.WriteFile(path, []byte("level=WARN old warning\n"), 0o644)
	mark := fileSize(path)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("level=INFO a\nlevel=ERROR datasync failed\nlevel=INFO b\n")
	f.Close()
	if got := logExcerpt(path, mark, 10); got != "level=ERROR datasync failed" {
		t.Fatalf("excerpt %q", got)
	}
	os.WriteFile(path, []byte("one\ntwo\n"), 0o644)
	if got := logExcerpt(path, 0, 10); got != "one\ntwo" {
		t.Fatalf("no warnings: %q", got)
	}
}
