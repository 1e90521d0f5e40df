package log

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/sluice-broker/sluice/engine/storage"
)

// The checkpoint file the shard keeps for its partitions, in the spirit of
// Kafka's recovery-point-offset-checkpoint: text, a version line, a count
// line, then one line per partition directory name, sorted:
//
//	1
//	2
//	orders-0 4711 0 1
//	orders-1 0 0 0
//
// The columns are the partition directory name, RecoveryPoint,
// LogStartOffset and Clean (1 or 0). Topic names cannot contain spaces.

const checkpointVersion = 1

// WriteCheckpointFile replaces the file at path atomically and durably: it
// writes path.tmp, datasyncs it, renames it over path and syncs the
// directory.
func WriteCheckpointFile(fs storage.FS, path string, entries map[string]Checkpoint) error {
	keys := make([]string, 0, len(entries))
	for k := range entries {
		if k == "" || strings.ContainsAny(k, " \t\n") {
			return fmt.Errorf("log: checkpoint key %q", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b bytes.Buffer
	fmt.Fprintf(&b, "%d\n%d\n", checkpointVersion, len(keys))
	for _, k := range keys {
		e := entries[k]
		clean := 0
		if e.Clean {
			clean = 1
		}
		fmt.Fprintf(&b, "%s %d %d %d\n", k, e.RecoveryPoint, e.LogStartOffset, clean)
	}
	return writeFileAtomic(fs, path, b.Bytes())
}

// ReadCheckpointFile reads a file written by WriteCheckpointFile. A missing
// file is an empty map; a malformed one is an error (never guessed at).
func ReadCheckpointFile(fs storage.FS, path string) (map[string]Checkpoint, error) {
	data, err := readWholeFile(fs, path)
	if os.IsNotExist(err) {
		return map[string]Checkpoint{}, nil
	}
	if err != nil {
		return nil, err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("log: checkpoint file %s: %s", path, fmt.Sprintf(format, args...))
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	line := func() (string, bool) {
		if !sc.Scan() {
			return "", false
		}
		return sc.Text(), true
	}
	v, ok := line()
	if !ok || v != strconv.Itoa(checkpointVersion) {
		return nil, bad("unsupported version %q", v)
	}
	c, ok := line()
	count, err := strconv.Atoi(c)
	if !ok || err != nil || count < 0 || count > len(data) {
		return nil, bad("bad count %q", c)
	}
	out := make(map[string]Checkpoint, count)
	for i := 0; i < count; i++ {
		text, ok := line()
		fields := strings.Fields(text)
		if !ok || len(fields) != 4 {
			return nil, bad("entry %d: %q", i, text)
		}
		rp, err1 := strconv.ParseInt(fields[1], 10, 64)
		start, err2 := strconv.ParseInt(fields[2], 10, 64)
		if err1 != nil || err2 != nil || rp < 0 || start < 0 || (fields[3] != "0" && fields[3] != "1") {
			return nil, bad("entry %d: %q", i, text)
		}
		out[fields[0]] = Checkpoint{RecoveryPoint: Offset(rp), LogStartOffset: Offset(start), Clean: fields[3] == "1"}
	}
	if extra, ok := line(); ok {
		return nil, bad("trailing %q", extra)
	}
	return out, nil
}

// writeFileAtomic writes data to path through path.tmp: write, datasync,
// rename, directory sync.
func writeFileAtomic(fs storage.FS, path string, data []byte) error {
	tmp := path + tmpSuffix
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		// The old file stays; the half-written new one must not take the
		// space a full disk needs for the next try.
		f.Close()
		fs.Remove(tmp)
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return fail(err)
	}
	if err := f.Datasync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		fs.Remove(tmp)
		return err
	}
	if err := fs.Rename(tmp, path); err != nil {
		fs.Remove(tmp)
		return err
	}
	return fs.SyncDir(filepath.Dir(path))
}
