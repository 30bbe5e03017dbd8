package e2e_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hallmark-build/hallmark/builder/tenant"
	"github.com/hallmark-build/hallmark/internal/bazeltest"
)

// runscForE2E finds a runsc that can run the gVisor tier: $HALLMARK_RUNSC,
// .cache/runsc/runsc (make runsc), or runsc in PATH;
// it returns "" and the reason when there is none that works here.
func runscForE2E(t *testing.T) (string, string) {
	t.Helper()
	root, _ := bazeltest.RepoRoot()
	var found string
	for _, p := range []string{os.Getenv("HALLMARK_RUNSC"), filepath.Join(root, ".cache/runsc/runsc")} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			found = p
			break
		}
	}
	if found == "" {
		p, err := exec.LookPath("runsc")
		if err != nil {
			return "", "no runsc (run make runsc, or set HALLMARK_RUNSC)"
		}
		found = p
	}
	if out, _ := exec.Command(found, "--version").Output(); strings.Contains(string(out), "20221219") {
		return "", found + " is Debian 12's runsc 20221219, which rejects statx(AT_NO_AUTOMOUNT), so ls and stat fail; run make runsc"
	}
	if os.Geteuid() != 0 {
		return "", "runsc needs root here"
	}
	cmd := exec.Command(found, "--network=none", "--root="+t.TempDir(), "do", "/bin/true")
	cmd.Dir = t.TempDir()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Sprintf("%s cannot start a sandbox here: %v: %s", found, err, strings.TrimSpace(string(out)))
	}
	return found, ""
}

// startConfiguredFarm starts hallmark-builder with --config=YAML (written to
// a file) and extra flags, like startFarm.
func startConfiguredFarm(t *testing.T, config string, extra ...string) *farm {
	t.Helper()
	bin := builder(t)
	base, err := os.MkdirTemp("", "hallmark-e2e-tenancy-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	data := filepath.Join(base, "data")
	// runsc pins one empty network namespace for its gofers with a bind mount
	// in its state directory; unmount it (after the farm stops) so that the
	// data directory can be removed.
	t.Cleanup(func() {
		for i := 0; i < 64 && syscall.Unmount(filepath.Join(data, "gvisor", "runsc", "null-netns"), syscall.MNT_DETACH) == nil; i++ {
		}
	})
	cfgPath := filepath.Join(base, "tenants.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	return launchFarm(t, bin, addr, data, append([]string{"--metrics-listen=", "--config=" + cfgPath}, extra...)...)
}

// probeBuild is a package added to each tenant's copy of the example: a
// genrule that runs the shell tools user genrules call and records the
// kernel's log, which under gVisor names gVisor.
const probeBuild = `genrule(
    name = "probe",
    srcs = ["in.txt"],
    outs = ["probe.txt"],
    cmd = "set -e; ls -l $(location in.txt) > $@; stat -c 'size=%s' $(location in.txt) >> $@; " +
          "cat $(location in.txt) | tr a-z A-Z | sort >> $@; mkdir -p $(@D)/d; cp $(location in.txt) $(@D)/d/; find $(@D)/d -type f >> $@; " +
          "(dmesg 2>&1 || true) | head -n 3 >> $@",
)
`

const tenancyConfig = `
tenants:
  - name: payments
    instance_names: [payments]
    tokens: ["%s"]
    ring: sensitive
    sandbox: namespaces
  - name: research
    instance_names: [research]
    tokens: ["%s"]
    ring: hardened
    sandbox: %s
`

// TestTwoTenantsBuildAtOnce: Bazel 4.2.3 builds examples/go_service for two
// tenants at the same time, each with its own output base, instance name and
// token; "research" runs on the gVisor tier. An unauthenticated build is
// refused with a message that tells the user what to pass.
func TestTwoTenantsBuildAtOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end Bazel test; skipped with -short")
	}
	env := bazeltest.Require(t)
	runsc, why := runscForE2E(t)
	researchSandbox := "gvisor"
	var extra []string
	if runsc == "" {
		// Only the gVisor half is skipped: both tenants still build at once.
		t.Logf("gVisor tier not tested, research runs on namespaces: %s", why)
		researchSandbox = "namespaces"
	} else {
		extra = append(extra, "--runsc="+runsc)
	}
	cfg := fmt.Sprintf(tenancyConfig, tenant.HashToken("payments-token"), tenant.HashToken("research-token"), researchSandbox)
	f := startConfiguredFarm(t, cfg, append(extra, "--workers=4")...)
	remote := bazeltest.RemoteFlags(f.Addr)

	t.Run("Unauthenticated", func(t *testing.T) {
		ws := env.Workspace(t, example)
		r := ws.Build(append(remote, "--remote_instance_name=payments", "//...")...)
		if r.Err == nil {
			t.Fatalf("a build without a token succeeded:\n%s", r.Output)
		}
		if !strings.Contains(r.Output, "UNAUTHENTICATED") || !strings.Contains(r.Output, "--remote_header=Authorization=Bearer") {
			t.Errorf("Bazel's output does not tell the user to pass a token (want UNAUTHENTICATED and --remote_header=Authorization=Bearer):\n%s", r.Output)
		}
		for _, line := range strings.Split(r.Output, "\n") {
			if strings.Contains(line, "UNAUTHENTICATED") {
				t.Logf("Bazel says: %s", line)
				break
			}
		}
		r = ws.Build(append(remote, "--remote_instance_name=payments", "--remote_header=Authorization=Bearer wrong-token", "//...")...)
		if r.Err == nil || !strings.Contains(r.Output, "UNAUTHENTICATED") {
			t.Errorf("a build with a wrong token: %v, want refused with UNAUTHENTICATED:\n%s", r.Err, r.Output)
		}
		r = ws.Build(append(remote, "--remote_instance_name=research", "--remote_header=Authorization=Bearer payments-token", "//...")...)
		if r.Err == nil || !strings.Contains(r.Output, "PERMISSION_DENIED") {
			t.Errorf("payments' token on research's instance: %v, want refused with PERMISSION_DENIED:\n%s", r.Err, r.Output)
		}
	})

	type build struct {
		name  string
		ws    *bazeltest.Workspace
		flags []string
		r     *bazeltest.Result
	}
	var builds []*build
	for _, name := range []string{"payments", "research"} {
		ws := env.Workspace(t, example)
		if err := os.Mkdir(filepath.Join(ws.Dir, "probe"), 0o755); err != nil {
			t.Fatal(err)
		}
		for file, content := range map[string]string{"BUILD.bazel": probeBuild, "in.txt": "tenant " + name + "\n"} {
			if err := os.WriteFile(filepath.Join(ws.Dir, "probe", file), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		flags := append(append([]string{}, remote...), "--remote_instance_name="+name,
			"--remote_header=Authorization=Bearer "+name+"-token")
		ws.Build(append(flags, "--nobuild", "//...")...).Must(t)
		builds = append(builds, &build{name: name, ws: ws, flags: flags})
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, b := range builds {
		wg.Add(1)
		go func() { defer wg.Done(); b.r = b.ws.Build(append(b.flags, "//...")...) }()
	}
	wg.Wait()
	t.Logf("both builds done in %v", time.Since(start))
	for _, b := range builds {
		b.r.Must(t)
		requireAllRemote(t, b.name, b.r)
		if b.r.Stats.Remote() == 0 {
			t.Errorf("%s: %v, want remote executions", b.name, b.r.Stats)
		}
		t.Logf("%s: %v in %v", b.name, b.r.Stats, b.r.Elapsed)
		runSelftest(t, b.ws)
		probe, err := os.ReadFile(b.ws.BinPath("probe/probe.txt"))
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		want := []string{"in.txt", "size=" + fmt.Sprint(len("tenant "+b.name+"\n")), strings.ToUpper("tenant " + b.name), "d/in.txt"}
		for _, w := range want {
			if !strings.Contains(string(probe), w) {
				t.Errorf("%s: the probe genrule's output lacks %q:\n%s", b.name, w, probe)
			}
		}
		onGVisor := strings.Contains(string(probe), "gVisor")
		if wantGVisor := b.name == "research" && researchSandbox == "gvisor"; onGVisor != wantGVisor {
			t.Errorf("%s: ran under gVisor: %v, want %v; probe output:\n%s", b.name, onGVisor, wantGVisor, probe)
		}
	}
	if researchSandbox != "gvisor" {
		t.Skipf("the gVisor half was not tested: %s", why)
	}
	// The farm stops its warm gVisor sandboxes when it stops.
	f.Stop()
	// Killed sandboxes take a moment to be reaped: allow a few seconds.
	left := runscProcesses(filepath.Join(f.Data, "gvisor"))
	for deadline := time.Now().Add(10 * time.Second); len(left) > 0 && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		left = runscProcesses(filepath.Join(f.Data, "gvisor"))
	}
	if len(left) > 0 {
		t.Errorf("runsc processes of the farm left after it stopped:\n%s\nfarm log:\n%s", strings.Join(left, "\n"), f.log.String())
	}
}

// runscProcesses lists the command lines of running processes that mention
// dir (runsc sandboxes and gofers name their --root).
func runscProcesses(dir string) []string {
	var out []string
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 { // gone, or a zombie (no command line)
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, dir) {
			out = append(out, e.Name()+": "+cmd)
		}
	}
	return out
}
