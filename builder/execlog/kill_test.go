package execlog_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"

	"github.com/hallmark-build/hallmark/builder/execlog"
)

// TestMain lets the test binary act as an appending child process for
// TestSIGKILL.
func TestMain(m *testing.M) {
	if dir := os.Getenv("EXECLOG_CHILD_DIR"); dir != "" {
		child(dir)
		return
	}
	os.Exit(m.Run())
}

// child appends from 8 goroutines forever and prints each acknowledged seq.
func child(dir string) {
	l, err := execlog.Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	for w := 0; w < 8; w++ {
		go func(w int) {
			for i := 0; ; i++ {
				s, err := l.Append(context.Background(), rec(w*1000000+i))
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintln(out, s)
				out.Flush()
				mu.Unlock()
			}
		}(w)
	}
	select {}
}

func TestSIGKILL(t *testing.T) {
	dir := t.TempDir()
	for round := 0; round < 3; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "EXECLOG_CHILD_DIR="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		var acked uint64
		for n := 0; n < 300 && sc.Scan(); n++ {
			s, _ := strconv.ParseUint(sc.Text(), 10, 64)
			acked = max(acked, s)
		}
		cmd.Process.Kill() // SIGKILL
		for sc.Scan() {
			s, _ := strconv.ParseUint(sc.Text(), 10, 64)
			acked = max(acked, s)
		}
		cmd.Wait()
		if acked == 0 {
			t.Fatal("child acknowledged nothing")
		}
		l, err := execlog.Open(dir)
		if err != nil {
			t.Fatalf("round %d: reopen after SIGKILL: %v", round, err)
		}
		head, _ := l.Head()
		l.Close()
		if head < acked {
			t.Fatalf("round %d: log head %d after SIGKILL, but %d was acknowledged", round, head, acked)
		}
	}
}
