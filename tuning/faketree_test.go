package tuning

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeTree lays out a host in a temporary directory: a 4-CPU machine with
// 16 GiB, swap, an NVMe disk whose second partition (xfs) holds
// /var/lib/sluice, a virtio NIC, and defaults a broker would want changed.
func fakeTree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := map[string]string{
		"proc/sys/vm/swappiness":                "60\n",
		"proc/sys/vm/dirty_ratio":               "20\n",
		"proc/sys/vm/dirty_background_ratio":    "10\n",
		"proc/sys/vm/dirty_bytes":               "0\n",
		"proc/sys/vm/dirty_background_bytes":    "0\n",
		"proc/sys/vm/max_map_count":             "65530\n",
		"proc/sys/vm/zone_reclaim_mode":         "0\n",
		"proc/sys/fs/file-max":                  "9223372036854775807\n",
		"proc/sys/fs/nr_open":                   "1048576\n",
		"proc/sys/fs/aio-max-nr":                "65536\n",
		"proc/sys/kernel/io_uring_disabled":     "2\n",
		"proc/sys/net/core/somaxconn":           "4096\n",
		"proc/sys/net/core/rmem_max":            "212992\n",
		"proc/sys/net/core/wmem_max":            "212992\n",
		"proc/sys/net/ipv4/tcp_max_syn_backlog": "512\n",
		"proc/sys/net/ipv4/tcp_rmem":            "4096\t131072\t6291456\n",
		"proc/sys/net/ipv4/tcp_wmem":            "4096\t16384\t4194304\n",
		"proc/meminfo":                          "MemTotal:       16777216 kB\nMemFree:         8000000 kB\n",
		"proc/swaps":                            "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/nvme0n1p3                          partition\t8388604\t\t0\t\t-2\n",
		"proc/self/limits": "Limit                     Soft Limit           Hard Limit           Units     \n" +
			"Max open files            1024                 4096                 files     \n" +
			"Max locked memory         8388608              8388608              bytes     \n",
		"proc/self/status": "Name:\tsluice\nCapEff:\t0000000000000000\n",
		"proc/self/mountinfo": "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw\n" +
			"23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:2 - proc proc rw\n" +
			"30 22 259:2 / /var/lib/sluice rw,relatime shared:3 - xfs /dev/nvme0n1p2 rw,attr2,inode64\n",
		"sys/kernel/mm/transparent_hugepage/enabled":                        "[always] madvise never\n",
		"sys/devices/system/cpu/online":                                     "0-3\n",
		"sys/devices/system/node/online":                                    "0\n",
		"sys/devices/system/clocksource/clocksource0/current_clocksource":   "hpet\n",
		"sys/devices/system/clocksource/clocksource0/available_clocksource": "tsc hpet acpi_pm \n",

		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/dev":                 "259:0\n",
		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/queue/scheduler":     "[none] mq-deadline kyber \n",
		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/queue/nomerges":      "0\n",
		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/queue/read_ahead_kb": "8192\n",
		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/queue/write_cache":   "write back\n",
		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/queue/rotational":    "0\n",
		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p2/dev":       "259:2\n",
		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p2/partition": "2\n",
		"sys/devices/pci0000:00/0000:00:04.0/msi_irqs/40":                            "msix\n",
		"sys/devices/pci0000:00/0000:00:04.0/msi_irqs/41":                            "msix\n",
		"sys/devices/pci0000:00/0000:00:03.0/msi_irqs/50":                            "msix\n",
		"sys/devices/pci0000:00/0000:00:03.0/msi_irqs/51":                            "msix\n",
		"sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0/address":               "52:54:00:12:34:56\n",
		"sys/devices/virtual/net/lo/address":                                         "00:00:00:00:00:00\n",
		"proc/irq/40/smp_affinity_list":                                              "0-3\n",
		"proc/irq/41/smp_affinity_list":                                              "0-3\n",
		"proc/irq/50/smp_affinity_list":                                              "2\n",
		"proc/irq/51/smp_affinity_list":                                              "1\n",
	}
	for cpu := 0; cpu < 4; cpu++ {
		dir := "sys/devices/system/cpu/cpu" + string(rune('0'+cpu)) + "/cpufreq/"
		files[dir+"scaling_governor"] = "powersave\n"
		files[dir+"scaling_available_governors"] = "performance powersave\n"
	}
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"sys/dev/block/259:0": "../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1",
		"sys/dev/block/259:2": "../../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/nvme0n1p2",
		"sys/block/nvme0n1":   "../devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1",
		"sys/class/net/eth0":  "../../devices/pci0000:00/0000:00:03.0/virtio2/net/eth0",
		"sys/class/net/lo":    "../../devices/virtual/net/lo",
		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/nvme0n1/device": "../../nvme0",
		"sys/devices/pci0000:00/0000:00:04.0/nvme/nvme0/device":         "../../../0000:00:04.0",
		"sys/devices/pci0000:00/0000:00:03.0/virtio2/net/eth0/device":   "../../../virtio2",
	}
	for name, target := range links {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "var/lib/sluice"), 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

// snapshot records every file's content, every link's target and every
// directory under root, to compare a tree byte for byte.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			out[rel] = "link " + target
			return err
		case d.IsDir():
			out[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			info, _ := d.Info()
			out[rel] = info.Mode().String() + " " + string(b)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffSnapshots(a, b map[string]string) []string {
	var diffs []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			diffs = append(diffs, "removed "+k)
		} else if v != w {
			diffs = append(diffs, "changed "+k+": "+strings.TrimSpace(v)+" -> "+strings.TrimSpace(w))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			diffs = append(diffs, "added "+k)
		}
	}
	return diffs
}
