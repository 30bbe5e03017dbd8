package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// GVisor is a Runner that runs each command under gVisor's runsc: a
// user-space kernel between the action and the host, no network, the same
// input/output contract as Bwrap (the input root at ExecRoot, the writable
// directories bound read-write, a read-only system root, a private /tmp).
// Each Run is one OCI container in a fresh bundle.
type GVisor struct {
	runsc   string
	flags   []string
	state   string
	passwd  string
	group   string
	system  []string
	etc     []string
	counter atomic.Uint64
	warm    warmPods
}

type gvisorOptions struct {
	runsc    string
	flags    []string
	state    string
	warmRuns int
}

// GVisorOption configures NewGVisor.
type GVisorOption func(*gvisorOptions) error

// WithRunscPath sets the runsc binary (default: "runsc" in PATH).
func WithRunscPath(p string) GVisorOption {
	return func(o *gvisorOptions) error { o.runsc = p; return nil }
}

// WithRunscFlags adds global runsc flags (for example "--platform=kvm").
func WithRunscFlags(flags ...string) GVisorOption {
	return func(o *gvisorOptions) error { o.flags = append(o.flags, flags...); return nil }
}

// WithGVisorStateDir sets where bundles and runsc's state live (default: a
// new temporary directory).
func WithGVisorStateDir(dir string) GVisorOption {
	return func(o *gvisorOptions) error { o.state = dir; return nil }
}

// brokenRunsc is the release of Debian 12's runsc, which answers EINVAL to
// statx(AT_NO_AUTOMOUNT), as coreutils' ls and stat call it.
const brokenRunsc = "20221219"

// WithWarmSandboxRuns sets how many actions one warm sandbox (see
// WithReuseKey) runs before it is replaced by a new one (default 500); 0
// or less turns warm sandboxes off, so every action boots its own.
func WithWarmSandboxRuns(n int) GVisorOption {
	return func(o *gvisorOptions) error { o.warmRuns = n; return nil }
}

// NewGVisor returns a gVisor Runner; it fails if runsc is not found or is
// the release that breaks ls and stat.
func NewGVisor(opts ...GVisorOption) (*GVisor, error) {
	o := gvisorOptions{runsc: "runsc", warmRuns: defaultWarmRuns}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	g := &GVisor{flags: o.flags}
	g.warm.maxRuns = o.warmRuns
	var err error
	if g.runsc, err = exec.LookPath(o.runsc); err != nil {
		return nil, fmt.Errorf("sandbox: runsc not found: %w", err)
	}
	if out, err := exec.Command(g.runsc, "--version").Output(); err == nil && strings.Contains(string(out), brokenRunsc) {
		return nil, fmt.Errorf("sandbox: %s is runsc %s (Debian 12's), whose statx rejects AT_NO_AUTOMOUNT, so ls and stat fail in every action; use a current runsc (make runsc builds .cache/runsc/runsc; see docs/tenancy.md)", g.runsc, brokenRunsc)
	}
	if o.state == "" {
		if o.state, err = os.MkdirTemp("", "hallmark-gvisor-"); err != nil {
			return nil, fmt.Errorf("sandbox: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(o.state, "runsc"), 0o700); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	if err := os.Chmod(o.state, 0o711); err != nil {
		return nil, fmt.Errorf("sandbox: %w", err)
	}
	g.state = o.state
	// A previous process on the same state directory (a farm restart) may
	// have left runsc's pinned namespace mounted; runsc would reuse it, but
	// start from a clean slate so that Close can always remove it.
	unmountNullNetNS(filepath.Join(o.state, "runsc"))
	g.deleteStale()
	for _, p := range []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"} {
		if fi, err := os.Lstat(p); err == nil && (fi.IsDir() || fi.Mode()&os.ModeSymlink != 0) {
			g.system = append(g.system, p)
		}
	}
	for _, n := range []string{"hosts", "nsswitch.conf", "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives", "ssl", "ca-certificates", "protocols", "services"} {
		if _, err := os.Stat("/etc/" + n); err == nil {
			g.etc = append(g.etc, "/etc/"+n)
		}
	}
	return g, nil
}

// Close stops the warm sandboxes and releases what runsc keeps between
// runs: current runsc versions pin one empty network namespace for all
// gofers by bind-mounting it at STATE/runsc/null-netns; Close unmounts it
// so the state directory can be removed. Bundles are removed after each
// run.
func (g *GVisor) Close() error {
	g.warm.closeAll(g)
	// Whatever runsc could not be made to delete (a command that failed on a
	// loaded host) is killed: no sandbox of this runner outlives it.
	killProcessesMentioning(filepath.Join(g.state, "runsc"))
	unmountNullNetNS(filepath.Join(g.state, "runsc"))
	return nil
}

// killProcessesMentioning SIGKILLs every process whose command line contains
// all of words (runsc's sandboxes and gofers name their --root and id).
func killProcessesMentioning(words ...string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmd, all := strings.ReplaceAll(string(b), "\x00", " "), true
		for _, w := range words {
			all = all && strings.Contains(cmd, w)
		}
		if all {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// unmountNullNetNS removes every bind mount runsc stacked at
// root/null-netns (concurrent first starts may stack several).
func unmountNullNetNS(root string) {
	p := filepath.Join(root, "null-netns")
	for i := 0; i < 64 && syscall.Unmount(p, syscall.MNT_DETACH) == nil; i++ {
	}
}

type ociSpec struct {
	OCIVersion  string            `json:"ociVersion"`
	Process     ociProcess        `json:"process"`
	Root        ociRoot           `json:"root"`
	Hostname    string            `json:"hostname"`
	Mounts      []ociMount        `json:"mounts"`
	Linux       ociLinuxCfg       `json:"linux"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type ociProcess struct {
	User            ociUser     `json:"user"`
	Args            []string    `json:"args"`
	Env             []string    `json:"env"`
	Cwd             string      `json:"cwd"`
	NoNewPrivileges bool        `json:"noNewPrivileges"`
	Rlimits         []ociRlimit `json:"rlimits,omitempty"`
}

type ociUser struct {
	UID uint32 `json:"uid"`
	GID uint32 `json:"gid"`
}

type ociRlimit struct {
	Type string `json:"type"`
	Hard uint64 `json:"hard"`
	Soft uint64 `json:"soft"`
}

type ociRoot struct {
	Path     string `json:"path"`
	Readonly bool   `json:"readonly"`
}

type ociMount struct {
	Destination string   `json:"destination"`
	Type        string   `json:"type"`
	Source      string   `json:"source"`
	Options     []string `json:"options,omitempty"`
}

type ociLinuxCfg struct {
	Namespaces []ociNamespace `json:"namespaces"`
}

type ociNamespace struct {
	Type string `json:"type"`
}

// Run implements Runner. With a reuse key in ctx (WithReuseKey), the
// command runs as a new container in the key's warm sandbox for spec.UID
// (started on first use); otherwise, or when that sandbox has died, in a
// sandbox of its own.
func (g *GVisor) Run(ctx context.Context, spec Spec) (Result, error) {
	if err := spec.Validate(); err != nil {
		return Result{}, err
	}
	start := time.Now()
	if key, ok := ctx.Value(reuseKey{}).(string); ok && key != "" && g.warm.maxRuns > 0 {
		p, err := g.warm.get(g, key, spec.UID, spec.GID)
		if err == nil {
			res, runErr := g.runOne(ctx, spec, p.id, start)
			good := runErr == nil && !(res.ExitCode != 0 && res.Killed == NotKilled && !g.alive(p))
			g.warm.retire(g, p)
			if good {
				return res, nil
			}
			if ctx.Err() != nil {
				return res, runErr
			}
			// The warm sandbox died under the command: drop it and run the
			// command cold, so that a broken sandbox never decides an
			// action's result.
			g.warm.drop(g, p)
		}
	}
	return g.runOne(ctx, spec, "", start)
}

// global returns runsc's global flags.
func (g *GVisor) global() []string {
	return append([]string{"--root=" + filepath.Join(g.state, "runsc"), "--network=none", "--ignore-cgroups"}, g.flags...)
}

// newID returns a container id unique on this host.
func (g *GVisor) newID() string {
	return "hallmark-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(g.counter.Add(1), 10)
}

// writeBundle writes an OCI bundle for spec at STATE/id; with pod set, the
// container joins that running sandbox instead of starting its own; podRoot
// marks the first container of a warm sandbox.
func (g *GVisor) writeBundle(spec Spec, id, pod string, podRoot bool) (string, error) {
	bundle := filepath.Join(g.state, id)
	if err := os.MkdirAll(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	etcDir := filepath.Join(bundle, "etc")
	if err := os.Mkdir(etcDir, 0o755); err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/bin/sh\nhallmark:x:%d:%d:hallmark:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", spec.UID, spec.GID)
	group := fmt.Sprintf("root:x:0:\nhallmark:x:%d:\nnogroup:x:65534:\n", spec.GID)
	for name, content := range map[string]string{"passwd": passwd, "group": group} {
		if err := os.WriteFile(filepath.Join(etcDir, name), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("sandbox: %w", err)
		}
	}

	wd := ExecRoot
	if spec.WorkingDir != "" {
		wd += "/" + spec.WorkingDir
	}
	s := ociSpec{
		OCIVersion: "1.0.2",
		Process: ociProcess{
			User: ociUser{UID: spec.UID, GID: spec.GID}, Args: spec.Args, Env: spec.Env, Cwd: wd, NoNewPrivileges: true,
		},
		Root:     ociRoot{Path: filepath.Join(bundle, "rootfs"), Readonly: true},
		Hostname: "localhost",
		Linux: ociLinuxCfg{Namespaces: []ociNamespace{
			{Type: "pid"}, {Type: "network"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"},
		}},
	}
	if spec.Limits.FileSizeBytes > 0 {
		n := uint64(spec.Limits.FileSizeBytes)
		s.Process.Rlimits = append(s.Process.Rlimits, ociRlimit{Type: "RLIMIT_FSIZE", Hard: n, Soft: n})
	}
	if spec.Limits.Processes > 0 {
		n := uint64(spec.Limits.Processes)
		s.Process.Rlimits = append(s.Process.Rlimits, ociRlimit{Type: "RLIMIT_NPROC", Hard: n, Soft: n})
	}
	ro := []string{"rbind", "ro"}
	s.Mounts = append(s.Mounts,
		ociMount{Destination: "/proc", Type: "proc", Source: "proc"},
		ociMount{Destination: "/dev", Type: "tmpfs", Source: "tmpfs"},
		ociMount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"mode=1777"}},
	)
	for _, p := range g.system {
		src, err := filepath.EvalSymlinks(p)
		if err != nil {
			continue
		}
		s.Mounts = append(s.Mounts, ociMount{Destination: p, Type: "bind", Source: src, Options: ro})
	}
	for _, p := range g.etc {
		s.Mounts = append(s.Mounts, ociMount{Destination: p, Type: "bind", Source: p, Options: ro})
	}
	for _, n := range []string{"passwd", "group"} {
		s.Mounts = append(s.Mounts, ociMount{Destination: "/etc/" + n, Type: "bind", Source: filepath.Join(etcDir, n), Options: ro})
	}
	rootWritable := false
	for _, w := range spec.Writable {
		if w == "" {
			rootWritable = true
		}
	}
	if rootWritable {
		s.Mounts = append(s.Mounts, ociMount{Destination: ExecRoot, Type: "bind", Source: spec.InputRoot, Options: []string{"rbind", "rw"}})
	} else {
		s.Mounts = append(s.Mounts, ociMount{Destination: ExecRoot, Type: "bind", Source: spec.InputRoot, Options: ro})
	}
	for _, m := range spec.Mounts {
		s.Mounts = append(s.Mounts, ociMount{Destination: ExecRoot + "/" + m.Target, Type: "bind", Source: m.Source, Options: ro})
	}
	for _, w := range spec.Writable {
		if w != "" {
			s.Mounts = append(s.Mounts, ociMount{Destination: ExecRoot + "/" + w, Type: "bind", Source: spec.InputRoot + "/" + w, Options: []string{"rbind", "rw"}})
		}
	}
	if pod != "" {
		s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "container", "io.kubernetes.cri.sandbox-id": pod}
	} else if podRoot {
		// The warm sandbox's own first container (see warmPods).
		s.Annotations = map[string]string{"io.kubernetes.cri.container-type": "sandbox"}
	}
	b, err := json.Marshal(s)
	if err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		return "", fmt.Errorf("sandbox: %w", err)
	}
	return bundle, nil
}

// runOne runs spec as one container (in pod's sandbox when pod is set) and
// removes its bundle afterwards.
func (g *GVisor) runOne(ctx context.Context, spec Spec, pod string, start time.Time) (Result, error) {
	id := g.newID()
	bundle, err := g.writeBundle(spec, id, pod, false)
	defer os.RemoveAll(filepath.Join(g.state, id))
	if err != nil {
		return Result{}, err
	}
	stdout, err := openOutput(spec.Stdout)
	if err != nil {
		return Result{}, err
	}
	defer stdout.Close()
	stderr, err := openOutput(spec.Stderr)
	if err != nil {
		return Result{}, err
	}
	defer stderr.Close()

	global := g.global()
	args := append(append([]string{}, global...), "run", "--bundle", bundle, id)
	cmd := exec.Command(g.runsc, args...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return Result{}, fmt.Errorf("sandbox: starting runsc: %w", err)
	}
	defer exec.Command(g.runsc, append(append([]string{}, global...), "delete", "--force", id)...).Run()

	var timeout <-chan time.Time
	if spec.Limits.Timeout > 0 {
		t := time.NewTimer(spec.Limits.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var killed Reason
	var waitErr error
	select {
	case waitErr = <-done:
	case <-timeout:
		killed = Timeout
	case <-ctx.Done():
		killed = Cancelled
	}
	if killed != NotKilled {
		exec.Command(g.runsc, append(append([]string{}, global...), "kill", "--all", id, "KILL")...).Run()
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		waitErr = <-done
	}
	res := Result{Killed: killed, WallTime: time.Since(start)}
	if ps := cmd.ProcessState; ps != nil {
		res.UserTime, res.SystemTime = ps.UserTime(), ps.SystemTime()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			res.MaxRSSBytes = ru.Maxrss * 1024
		}
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok {
			switch {
			case ws.Exited():
				res.ExitCode = ws.ExitStatus()
			case ws.Signaled():
				res.ExitCode = 128 + int(ws.Signal())
			}
		}
	}
	if killed == Cancelled {
		return res, fmt.Errorf("sandbox: %w", ctx.Err())
	}
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		return res, fmt.Errorf("sandbox: runsc: %w", waitErr)
	}
	return res, nil
}
