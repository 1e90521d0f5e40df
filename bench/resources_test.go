package bench

import "testing"

// The machine's CPU line: idle and iowait are not busy; steal is busy (the
// vCPU wanted to run) and is also counted on its own.
func TestParseMachineCPU(t *testing.T) {
	a, err := parseMachineCPU("cpu  100 0 50 800 20 0 5 25 7 0")
	if err != nil {
		t.Fatal(err)
	}
	if a.Total != 1000 || a.Busy != 180 || a.Steal != 25 {
		t.Fatalf("%+v, want Total 1000 Busy 180 Steal 25", a)
	}
	b, _ := parseMachineCPU("cpu  200 0 50 1300 20 0 5 225 7 0")
	if got := b.StealFraction(a); got != 0.25 {
		t.Fatalf("steal fraction %v, want 0.25 (200 of 800 ticks)", got)
	}
	if got := b.BusyFraction(a); got != 0.375 {
		t.Fatalf("busy fraction %v, want 0.375 (300 of 800 ticks)", got)
	}
	if _, err := parseMachineCPU("intr 1 2 3"); err == nil {
		t.Fatal("a line that is not the cpu line parsed")
	}
}
