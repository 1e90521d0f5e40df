package engine

import "testing"

func TestDescriptorBudget(t *testing.T) {
	for _, c := range []struct {
		limit, open, per uint64
		more             int
		fits             bool
		room             int
	}{
		{limit: 20000, open: 100, per: 3, more: 5000, fits: true, room: (20000 - 100 - 2000) / 3},
		{limit: 20000, open: 100, per: 3, more: 6000, fits: false, room: (20000 - 100 - 2000) / 3},
		{limit: 1024, open: 10, per: 2, more: 100, fits: true, room: (1024 - 10 - 256) / 2},
		{limit: 300, open: 50, per: 2, more: 1, fits: false, room: 0}, // all of it is the reserve
		{limit: 1 << 20, open: 30000, per: 3, more: 10000, fits: true, room: (1<<20 - 30000 - (1<<20)/10) / 3},
	} {
		fits, room := descriptorBudget(c.limit, c.open, c.per, c.more)
		if fits != c.fits || room != c.room {
			t.Errorf("limit %d, open %d, %d more: fits %v room %d; want %v, %d", c.limit, c.open, c.more, fits, room, c.fits, c.room)
		}
	}
}
