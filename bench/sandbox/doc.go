// Package sandbox benchmarks the per-action overhead of the farm's worker
// against a bare bubblewrap launch. Run it (as root, with bwrap installed):
//
//	go test -run XXX -bench . -benchtime 200x ./bench/sandbox/
//
// BenchmarkBareBwrap starts `bwrap <namespaces, read-only /usr> /bin/true` as
// an unprivileged uid; BenchmarkRunner the same through sandbox.Bwrap (cgroups,
// prlimit, generated /etc, the full mount set); BenchmarkExecute a whole
// worker.Execute of a tiny action (three input files, one output, stdout and
// stderr stored). The goal: Execute at most 2 ms above BareBwrap.
package sandbox
