package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

type reuseKey struct{}

// WithReuseKey returns a context under which a GVisor runner may run the
// command in a warm sandbox that it keeps for key and the Spec's UID,
// instead of booting a new one (about 20x cheaper here). Every command
// still gets a container of its own: its own mounts, processes, /tmp and
// uid, and it ends with the command. The sandbox's kernel (gVisor's
// sentry) is shared by the runs with the same key and UID, so key must be
// a security boundary: the farm passes the tenant's name, and a warm
// sandbox is never shared between tenants. Runners other than GVisor
// ignore it.
func WithReuseKey(ctx context.Context, key string) context.Context {
	return context.WithValue(ctx, reuseKey{}, key)
}

// warmPods holds the running warm sandboxes of one GVisor runner, one per
// reuse key and uid.
type warmPods struct {
	maxRuns int // set once by NewGVisor; <= 0: no warm sandboxes
	mu      sync.Mutex
	pods    map[string]*warmPod
}

type warmPod struct {
	mapKey string
	id     string
	ready  chan struct{}
	err    error
	runs   int // guarded by warmPods.mu
}

// defaultWarmRuns bounds how many actions one warm sandbox serves before it
// is replaced, so that kernel state (caches, memory) cannot build up in it
// without end (WithWarmSandboxRuns).
const defaultWarmRuns = 500

// get returns the running warm sandbox for key and uid, starting it first
// if there is none, and counts the run; the sandbox's last run takes it out
// of the map (retire deletes it once that run ended).
func (w *warmPods) get(g *GVisor, key string, uid, gid uint32) (*warmPod, error) {
	mk := key + "\x00" + strconv.FormatUint(uint64(uid), 10)
	w.mu.Lock()
	if w.pods == nil {
		w.pods = map[string]*warmPod{}
	}
	p, ok := w.pods[mk]
	if !ok {
		p = &warmPod{mapKey: mk, id: g.newID(), ready: make(chan struct{})}
		w.pods[mk] = p
	}
	p.runs++
	if p.runs >= w.maxRuns {
		delete(w.pods, mk)
	}
	w.mu.Unlock()
	if !ok {
		p.err = g.startPod(p.id, uid, gid)
		if p.err != nil {
			w.mu.Lock()
			if w.pods[mk] == p {
				delete(w.pods, mk)
			}
			w.mu.Unlock()
		}
		close(p.ready)
	}
	<-p.ready
	return p, p.err
}

// retire deletes p's sandbox if it served its last run.
func (w *warmPods) retire(g *GVisor, p *warmPod) {
	w.mu.Lock()
	last := p.runs >= w.maxRuns
	w.mu.Unlock()
	if last {
		g.deletePod(p.id)
	}
}

// drop forgets p and deletes its sandbox.
func (w *warmPods) drop(g *GVisor, p *warmPod) {
	w.mu.Lock()
	if w.pods[p.mapKey] == p {
		delete(w.pods, p.mapKey)
	}
	w.mu.Unlock()
	g.deletePod(p.id)
}

// closeAll deletes every warm sandbox.
func (w *warmPods) closeAll(g *GVisor) {
	w.mu.Lock()
	pods := w.pods
	w.pods = nil
	w.mu.Unlock()
	for _, p := range pods {
		<-p.ready
		if p.err == nil {
			g.deletePod(p.id)
		}
	}
}

// startPod boots a sandbox whose first container sleeps as uid, with no
// input root of its own (an empty directory) and the usual system mounts.
// Its bundle stays until deletePod: runsc serves the container's files from
// it.
func (g *GVisor) startPod(id string, uid, gid uint32) error {
	empty := filepath.Join(g.state, id+"-empty")
	if err := os.MkdirAll(empty, 0o755); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	spec := Spec{Args: []string{"/bin/sleep", "infinity"}, InputRoot: empty, UID: uid, GID: gid}
	bundle, err := g.writeBundle(spec, id, "", true)
	if err != nil {
		return err
	}
	// Not a pipe: the detached sandbox keeps its stdio open for as long as
	// it runs, so reading a pipe to EOF would wait for it.
	logPath := filepath.Join(g.state, id+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	defer os.Remove(logPath)
	defer logFile.Close()
	cmd := exec.Command(g.runsc, append(g.global(), "run", "--detach", "--bundle", bundle, id)...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Run(); err != nil {
		out, _ := os.ReadFile(logPath)
		g.deletePod(id)
		return fmt.Errorf("sandbox: starting a warm gVisor sandbox: %v: %s", err, out)
	}
	return nil
}

// alive reports whether p's sandbox still runs.
func (g *GVisor) alive(p *warmPod) bool {
	out, err := exec.Command(g.runsc, append(g.global(), "state", p.id)...).Output()
	if err != nil {
		return false
	}
	var st struct {
		Status string `json:"status"`
	}
	return json.Unmarshal(out, &st) == nil && st.Status == "running"
}

// deletePod stops and removes a warm sandbox and its bundle. Should
// `runsc delete` fail (a loaded host, a lock held), the sandbox process is
// killed directly, so that no sandbox outlives its runner.
func (g *GVisor) deletePod(id string) {
	pid := 0
	if out, err := exec.Command(g.runsc, append(g.global(), "state", id)...).Output(); err == nil {
		var st struct {
			Pid int `json:"pid"`
		}
		if json.Unmarshal(out, &st) == nil {
			pid = st.Pid
		}
	}
	err := exec.Command(g.runsc, append(g.global(), "delete", "--force", id)...).Run()
	if pid > 1 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.Contains(string(b), filepath.Join(g.state, "runsc")) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err != nil || pid <= 1 {
		// runsc could not tell or do: find the sandbox by its id.
		killProcessesMentioning(filepath.Join(g.state, "runsc"), id)
	}
	os.RemoveAll(filepath.Join(g.state, id))
	os.RemoveAll(filepath.Join(g.state, id+"-empty"))
}

// deleteStale deletes the containers a previous process left in the state
// directory (warm sandboxes of a farm that was killed): the directory is
// this runner's alone.
func (g *GVisor) deleteStale() {
	entries, _ := os.ReadDir(filepath.Join(g.state, "runsc"))
	if len(entries) == 0 {
		return
	}
	out, err := exec.Command(g.runsc, append(g.global(), "list", "--quiet")...).Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		g.deletePod(id)
	}
}
