package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupParent is a directory of one cgroup v1 controller hierarchy under
// which each run gets its own cgroup.
type cgroupParent struct {
	controller string // "pids" or "memory"
	dir        string
}

// findCgroupParent returns <mount>/<our own cgroup>/<name> for controller,
// creating it, or an error if cgroup v1 controller is not usable.
func findCgroupParent(mount, controller, name string) (*cgroupParent, error) {
	own := "/"
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			parts := strings.SplitN(line, ":", 3)
			if len(parts) != 3 {
				continue
			}
			for _, c := range strings.Split(parts[1], ",") {
				if c == controller {
					own = parts[2]
				}
			}
		}
	}
	base := filepath.Join(mount, controller)
	if _, err := os.Stat(filepath.Join(base, "cgroup.procs")); err != nil {
		return nil, fmt.Errorf("cgroup v1 %s controller not mounted at %s: %w", controller, base, err)
	}
	dir := filepath.Join(base, own, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cgroup %s: %w", dir, err)
	}
	p := &cgroupParent{controller: controller, dir: dir}
	p.sweep()
	return p, nil
}

// sweep removes the cgroups left behind by a crashed predecessor, killing
// what still runs in them.
func (p *cgroupParent) sweep() {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			c := &cgroup{dir: filepath.Join(p.dir, e.Name())}
			c.destroy()
		}
	}
}

// cgroup is one run's cgroup in one hierarchy.
type cgroup struct{ dir string }

func (p *cgroupParent) create(name string) (*cgroup, error) {
	dir := filepath.Join(p.dir, name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cgroup: %w", err)
	}
	return &cgroup{dir: dir}, nil
}

func (c *cgroup) set(file, value string) error {
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte(value), 0o644); err != nil {
		return fmt.Errorf("setting cgroup %s: %w", file, err)
	}
	return nil
}

func (c *cgroup) add(pid int) error { return c.set("cgroup.procs", strconv.Itoa(pid)) }

// stat reads the value of key in a "key value" file such as pids.events.
func (c *cgroup) stat(file, key string) int64 {
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func (c *cgroup) pids() []int {
	b, err := os.ReadFile(filepath.Join(c.dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// destroy kills every process in the cgroup until it is empty and removes
// it. It gives up after a few seconds (a process stuck in the kernel).
func (c *cgroup) destroy() error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ps := c.pids()
		if len(ps) == 0 {
			err := syscall.Rmdir(c.dir)
			if err == nil || errors.Is(err, syscall.ENOENT) {
				return nil
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				return fmt.Errorf("removing cgroup %s: %w", c.dir, err)
			}
		}
		for _, pid := range ps {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has processes %v", c.dir, ps)
		}
		time.Sleep(time.Millisecond)
	}
}
