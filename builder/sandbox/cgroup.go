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
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// cgroupParent is a directory of one cgroup v1 controller hierarchy under
// which each run gets its own cgroup.
type cgroupParent struct {
	controller string // "pids" or "memory"
	dir        string

	mu   sync.Mutex
	idle []*cgroup // empty cgroups ready for reuse (creating and removing one costs ms)
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

// sweep removes the cgroups left behind by crashed predecessors, killing
// what still runs in them. Cgroups are named "<pid>-<n>" after the process
// that made them; those of live processes (this one, or another farm or test
// on the same machine) are left alone.
func (p *cgroupParent) sweep() {
	ents, err := os.ReadDir(p.dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(e.Name(), "-")
		if pid, err := strconv.Atoi(pidStr); err == nil && pid > 0 && processAlive(pid) {
			continue
		}
		c := &cgroup{dir: filepath.Join(p.dir, e.Name())}
		c.destroy()
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// cgroupSeq numbers the cgroups of this process across all runners, so two
// runners in one process never pick the same name.
var cgroupSeq atomic.Uint64

// cgroup is one run's cgroup in one hierarchy.
type cgroup struct{ dir string }

// acquire returns an empty cgroup, reused or new.
func (p *cgroupParent) acquire() (*cgroup, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	dir := filepath.Join(p.dir, strconv.Itoa(os.Getpid())+"-"+strconv.FormatUint(cgroupSeq.Add(1), 10))
	p.mu.Unlock()
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating cgroup: %w", err)
	}
	return &cgroup{dir: dir}, nil
}

// release empties c (killing what is left in it) and keeps it for reuse.
func (p *cgroupParent) release(c *cgroup) error {
	if err := c.empty(); err != nil {
		return err
	}
	p.mu.Lock()
	p.idle = append(p.idle, c)
	p.mu.Unlock()
	return nil
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

// count reads a file holding one number, such as memory.failcnt.
func (c *cgroup) count(file string) int64 {
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
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

// empty kills every process in the cgroup until there is none. It gives up
// after a few seconds (a process stuck in the kernel).
func (c *cgroup) empty() error {
	deadline := time.Now().Add(5 * time.Second)
	pause := 50 * time.Microsecond
	for {
		ps := c.pids()
		if len(ps) == 0 {
			return nil
		}
		for _, pid := range ps {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still has processes %v", c.dir, ps)
		}
		time.Sleep(pause)
		if pause < 5*time.Millisecond {
			pause *= 2
		}
	}
}

// destroy empties the cgroup and removes it.
func (c *cgroup) destroy() error {
	if err := c.empty(); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := syscall.Rmdir(c.dir)
		if err == nil || errors.Is(err, syscall.ENOENT) {
			return nil
		}
		if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("removing cgroup %s: %w", c.dir, err)
		}
		time.Sleep(time.Millisecond)
	}
}
