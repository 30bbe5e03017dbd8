// Package sandbox runs one command in isolation.
//
// A Runner takes a Spec (argv, environment, the host directory that becomes the
// action's input root, the few directories inside it that may be written, and
// limits) and returns a Result (exit code, why it was killed, wall time,
// resource usage). The bwrap implementation (NewBwrap) uses bubblewrap to give
// the command new mount, PID, network, IPC, UTS, cgroup and user namespaces, a
// read-only system root, a private /tmp, a minimal /dev, no network and an
// unprivileged uid. Everything the command starts is killed when it exits,
// times out or its context is cancelled.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// ExecRoot is where the input root appears inside every sandbox. It is fixed so
// that absolute paths an action sees (and may write into its outputs) are the
// same on every worker.
const ExecRoot = "/hallmark/execroot"

// Runner runs commands in a sandbox. Implementations are safe for concurrent
// use.
type Runner interface {
	// Run runs spec.Args and waits for it and everything it started to end.
	// A command that ran (whatever its exit code, also when it was killed for
	// a limit or a timeout) gives a Result and a nil error. An error means
	// the sandbox could not be set up or ctx was cancelled; with
	// cancellation the process tree is killed first and the error wraps
	// ctx.Err().
	Run(ctx context.Context, spec Spec) (Result, error)
}

// RunnerFunc adapts a function to the Runner interface.
type RunnerFunc func(ctx context.Context, spec Spec) (Result, error)

// Run calls f.
func (f RunnerFunc) Run(ctx context.Context, spec Spec) (Result, error) { return f(ctx, spec) }

// Spec describes one sandboxed command.
type Spec struct {
	// Args is the command line. Args[0] is an absolute path, a path relative
	// to the working directory, or a bare name looked up in the PATH of Env
	// (REAPI v2.3 semantics).
	Args []string
	// Env is the complete environment ("NAME=value"); nothing is inherited.
	Env []string
	// InputRoot is the host directory mounted read-only at ExecRoot. It and
	// its parents must be searchable by UID.
	InputRoot string
	// WorkingDir is the working directory relative to InputRoot ("" for the
	// root itself).
	WorkingDir string
	// Writable lists directories, relative to InputRoot, that are mounted
	// read-write (whether the command may write there is then up to file
	// ownership and modes).
	Writable []string
	// Mounts are extra read-only bind mounts of host directories at paths
	// relative to InputRoot (for example cached, fully materialised input
	// subtrees). Each target directory must exist in InputRoot.
	Mounts []Mount
	// Stdout and Stderr are host paths of files that are created (truncated)
	// to receive the command's output. Empty discards it.
	Stdout, Stderr string
	// UID and GID are the unprivileged host ids the sandbox runs as. Zero is
	// refused: root would own the files of the farm's CAS.
	UID, GID uint32
	// Limits bound the command; zero fields mean "no limit".
	Limits Limits
}

// Mount is a read-only bind mount inside the input root.
type Mount struct {
	Source string // host path
	Target string // relative to InputRoot
}

// Limits bound what one command may use.
type Limits struct {
	// Timeout is the wall-clock limit; the process tree is killed after it.
	Timeout time.Duration
	// MemoryBytes bounds the memory of the whole process tree (cgroup).
	MemoryBytes int64
	// Processes bounds how many processes and threads may exist at once.
	Processes int
	// FileSizeBytes bounds the size of each file written (RLIMIT_FSIZE),
	// stdout and stderr included.
	FileSizeBytes int64
	// TmpBytes bounds the size of the private /tmp.
	TmpBytes int64
}

// Reason says why a command was killed.
type Reason string

// The reasons a command may have been killed for.
const (
	NotKilled Reason = ""
	Timeout   Reason = "timeout"
	Cancelled Reason = "cancelled"
	Memory    Reason = "memory limit"
)

// Result is what a command did.
type Result struct {
	// ExitCode is the command's exit status; 128+n when it died of signal n.
	ExitCode int
	// Killed says why the sandbox killed the command, if it did.
	Killed Reason
	// ProcessLimitHit reports that a fork failed because of Limits.Processes.
	ProcessLimitHit bool
	// WallTime is how long the sandbox ran, set-up included.
	WallTime time.Duration
	// UserTime and SystemTime are the CPU times of the process tree.
	UserTime, SystemTime time.Duration
	// MaxRSSBytes is the largest resident set of any process of the tree.
	MaxRSSBytes int64
}

// ErrInvalidSpec is the category of errors for malformed Specs.
var ErrInvalidSpec = errors.New("invalid sandbox spec")

// Validate checks that s can be run: arguments present, ids unprivileged,
// relative paths canonical and inside the input root.
func (s *Spec) Validate() error {
	if len(s.Args) == 0 || s.Args[0] == "" {
		return fmt.Errorf("%w: no command", ErrInvalidSpec)
	}
	if s.UID == 0 || s.GID == 0 {
		return fmt.Errorf("%w: uid %d / gid %d: the sandbox never runs as root", ErrInvalidSpec, s.UID, s.GID)
	}
	if s.InputRoot == "" || !path.IsAbs(s.InputRoot) {
		return fmt.Errorf("%w: input root %q is not an absolute path", ErrInvalidSpec, s.InputRoot)
	}
	if s.WorkingDir != "" {
		if err := CheckRelative(s.WorkingDir); err != nil {
			return fmt.Errorf("%w: working directory: %v", ErrInvalidSpec, err)
		}
	}
	for _, w := range s.Writable {
		if w == "" {
			continue // the whole input root
		}
		if err := CheckRelative(w); err != nil {
			return fmt.Errorf("%w: writable directory: %v", ErrInvalidSpec, err)
		}
	}
	for _, m := range s.Mounts {
		if !path.IsAbs(m.Source) {
			return fmt.Errorf("%w: mount source %q is not absolute", ErrInvalidSpec, m.Source)
		}
		if err := CheckRelative(m.Target); err != nil {
			return fmt.Errorf("%w: mount target: %v", ErrInvalidSpec, err)
		}
	}
	for _, e := range s.Env {
		if name, _, ok := strings.Cut(e, "="); !ok || name == "" {
			return fmt.Errorf("%w: environment entry %q is not NAME=value", ErrInvalidSpec, e)
		}
	}
	return nil
}

// CheckRelative accepts a canonical relative slash-separated path: not empty,
// not absolute, no empty, "." or ".." components, no NUL.
func CheckRelative(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q is absolute", p)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return fmt.Errorf("path %q contains NUL", p)
	}
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "":
			return fmt.Errorf("path %q has an empty component (double or trailing slash)", p)
		case ".", "..":
			return fmt.Errorf("path %q has a %q component", p, c)
		}
	}
	return nil
}
