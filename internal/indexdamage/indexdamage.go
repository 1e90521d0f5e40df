// Package indexdamage damages a data directory's index files the ways an
// unclean shutdown or a bad sector does, for the tests and benchmarks that
// check sluice rebuilds them (test/e2e, internal/restartbench).
package indexdamage

import (
	"os"
	"path/filepath"
)

// All damages every non-empty .index and .timeindex file under dir,
// alternately zeroing it and cutting it 3 bytes short of a whole entry,
// and returns how many it damaged.
func All(dir string) (int, error) {
	damaged := 0
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if info.IsDir() || info.Size() == 0 || (filepath.Ext(path) != ".index" && filepath.Ext(path) != ".timeindex") {
			return nil
		}
		if damaged%2 == 0 {
			err = os.WriteFile(path, make([]byte, info.Size()), 0o644)
		} else {
			err = os.Truncate(path, info.Size()-3)
		}
		damaged++
		return err
	})
	return damaged, err
}
