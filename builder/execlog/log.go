package execlog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// FileName is the log file's name inside the log directory.
const FileName = "records.log"

// Log is the single writer of an execution log. It is safe for concurrent
// use; concurrent Appends are written and synced together (group commit).
type Log struct {
	path string
	f    *os.File
	idx  *index

	mu       sync.Mutex
	cond     *sync.Cond
	next     uint64 // next sequence number to assign
	last     Hash   // hash of the last assigned record
	pending  []byte // frames assigned but not yet written
	recs     []Record
	flushing bool   // a leader is writing and syncing
	durable  uint64 // highest sequence number on stable storage
	err      error  // sticky write failure
	closed   bool
}

// Open opens (creating if needed) the log in dir for appending and loads its
// index. It verifies every record and the whole chain. A torn last record
// (the remains of an append interrupted by a crash: no valid record follows
// it) is never accepted: its bytes are saved to dir/torn-<offset>-<time>.bin
// for inspection and cut from the log. Any other damage is a *CorruptError
// and the log is not opened. Only one process may have the log open with
// Open at a time.
func Open(dir string) (*Log, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("execution log: %w", err)
	}
	path := filepath.Join(dir, FileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("execution log: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, path)
		}
		return nil, fmt.Errorf("execution log: lock %s: %w", path, err)
	}
	l, err := load(dir, path, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func load(dir, path string, f *os.File) (*Log, error) {
	buf, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("execution log: read %s: %w", path, err)
	}
	res, err := scan(path, buf, 0, 1, Hash{})
	if err != nil {
		return nil, err
	}
	if res.tail != "" {
		torn := buf[res.consumed:]
		save := filepath.Join(dir, fmt.Sprintf("torn-%d-%d.bin", res.consumed, time.Now().UnixNano()))
		if err := writeSynced(save, torn); err != nil {
			return nil, fmt.Errorf("execution log: saving torn tail: %w", err)
		}
		if err := f.Truncate(int64(res.consumed)); err != nil {
			return nil, fmt.Errorf("execution log: cutting torn tail: %w", err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return nil, fmt.Errorf("execution log: sync after cut: %w", err)
		}
		slog.Warn("execution log: cut a torn last record", "file", path, "offset", res.consumed,
			"bytes", len(torn), "reason", res.tail, "saved", save)
	}
	if _, err := f.Seek(int64(res.consumed), io.SeekStart); err != nil {
		return nil, fmt.Errorf("execution log: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, err
	}
	l := &Log{path: path, f: f, idx: newIndex(), next: 1}
	l.cond = sync.NewCond(&l.mu)
	l.idx.add(res.recs)
	if n := len(res.recs); n > 0 {
		l.next = res.recs[n-1].Seq + 1
		l.last = res.recs[n-1].Hash
		l.durable = res.recs[n-1].Seq
	}
	return l, nil
}

func writeSynced(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("execution log: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("execution log: sync %s: %w", dir, err)
	}
	return nil
}

// Append adds rec to the log and returns its sequence number once the record
// is on stable storage (written and fdatasync'ed). The log assigns Seq, Prev
// and Hash; whatever rec holds there is ignored. If Append fails after the
// record was handed to the file (a write or sync error), the log refuses all
// further appends; reopen it.
func (l *Log) Append(ctx context.Context, rec Record) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, ErrClosed
	}
	if l.err != nil {
		return 0, l.err
	}
	rec.Seq, rec.Prev = l.next, l.last
	body, err := encode(&rec)
	if err != nil {
		return 0, fmt.Errorf("execution log: record for action %s: %w", rec.Action, err)
	}
	if len(body) > MaxRecordSize {
		return 0, fmt.Errorf("execution log: record for action %s is %d bytes, over the limit %d", rec.Action, len(body), MaxRecordSize)
	}
	l.pending, rec.Hash = appendFrame(l.pending, body)
	l.recs = append(l.recs, rec)
	l.next++
	l.last = rec.Hash
	seq := rec.Seq
	for l.durable < seq && l.err == nil {
		if l.flushing {
			l.cond.Wait()
			continue
		}
		l.flush()
	}
	if l.durable >= seq {
		return seq, nil
	}
	return 0, l.err
}

// flush writes and syncs everything pending. Called with l.mu held; it
// releases the lock while doing I/O so other appenders can queue up.
func (l *Log) flush() {
	l.flushing = true
	buf, recs := l.pending, l.recs
	l.pending, l.recs = nil, nil
	l.mu.Unlock()
	_, err := l.f.Write(buf)
	if err == nil {
		err = unix.Fdatasync(int(l.f.Fd()))
	}
	if err == nil {
		l.idx.add(recs)
	}
	l.mu.Lock()
	l.flushing = false
	if err != nil {
		l.err = fmt.Errorf("execution log: writing records %d-%d: %w (log closed for appends; reopen it)", recs[0].Seq, recs[len(recs)-1].Seq, err)
	} else {
		l.durable = recs[len(recs)-1].Seq
	}
	l.cond.Broadcast()
}

// Close waits for pending appends and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	for l.flushing || len(l.pending) > 0 && l.err == nil {
		if l.flushing {
			l.cond.Wait()
			continue
		}
		l.flush()
	}
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	return l.f.Close()
}

// Path returns the log file's path.
func (l *Log) Path() string { return l.path }

// Lookup returns the records (oldest first) with an output whose digest is d:
// an output file, or an output directory's Tree or root Directory digest.
// The returned records share memory with the index and must not be modified.
func (l *Log) Lookup(d digest.Digest) []Record { return l.idx.lookup(d) }

// ByAction returns the records (oldest first) of executions of the action d.
func (l *Log) ByAction(d digest.Digest) []Record { return l.idx.byActionDigest(d) }

// Get returns the durable record with sequence number seq.
func (l *Log) Get(seq uint64) (Record, bool) { return l.idx.get(seq) }

// Head returns the sequence number and hash of the last durable record
// (0 and zeros for an empty log).
func (l *Log) Head() (uint64, Hash) { return l.idx.head() }
