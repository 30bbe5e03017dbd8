package execlog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// Reader reads an execution log without write access, possibly while
// another process appends to it. It is safe for concurrent use.
//
// Every record a Reader returns was verified: its hash matches its bytes and
// the chain links it to every record before it, back to the first. A record
// still being written (an incomplete or invalid last frame with nothing
// valid after it) is not returned until a later Refresh sees it complete.
type Reader struct {
	path string
	idx  *index

	mu     sync.Mutex // serialises Refresh
	offset int64      // bytes of verified frames
	err    error      // sticky corruption
}

// OpenReadOnly opens the log in dir for reading and loads every complete
// record. dir must exist; a missing log file is read as an empty log.
func OpenReadOnly(dir string) (*Reader, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("execution log: %w", err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("execution log: %s is not a directory", dir)
	}
	r := &Reader{path: filepath.Join(dir, FileName), idx: newIndex()}
	if err := r.Refresh(); err != nil {
		return nil, err
	}
	return r, nil
}

// Refresh reads and verifies records appended since the last call. After a
// corruption error every later call returns the same error.
func (r *Reader) Refresh() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	f, err := os.Open(r.path)
	if errors.Is(err, os.ErrNotExist) && r.offset == 0 {
		return nil
	}
	if err != nil {
		return fmt.Errorf("execution log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("execution log: %w", err)
	}
	if st.Size() < r.offset {
		r.err = &CorruptError{File: r.path, Seq: r.nextSeq(), Offset: st.Size(),
			Reason: fmt.Sprintf("the file shrank to %d bytes below the %d bytes already verified", st.Size(), r.offset)}
		return r.err
	}
	if st.Size() == r.offset {
		return nil
	}
	buf := make([]byte, st.Size()-r.offset)
	n, err := f.ReadAt(buf, r.offset)
	if err != nil && err != io.EOF {
		return fmt.Errorf("execution log: read %s: %w", r.path, err)
	}
	buf = buf[:n]
	seq, prev := r.idx.head()
	res, err := scan(r.path, buf, r.offset, seq+1, prev)
	if err != nil {
		r.err = err
		return err
	}
	r.idx.add(res.recs)
	r.offset += int64(res.consumed)
	return nil
}

func (r *Reader) nextSeq() uint64 { s, _ := r.idx.head(); return s + 1 }

// Path returns the log file's path.
func (r *Reader) Path() string { return r.path }

// Lookup returns the verified records (oldest first) with an output whose
// digest is d: an output file, or an output directory's Tree or root
// Directory digest. The records must not be modified.
func (r *Reader) Lookup(d digest.Digest) []Record { return r.idx.lookup(d) }

// ByAction returns the verified records (oldest first) of executions of the
// action d.
func (r *Reader) ByAction(d digest.Digest) []Record { return r.idx.byActionDigest(d) }

// Get returns the verified record with sequence number seq.
func (r *Reader) Get(seq uint64) (Record, bool) { return r.idx.get(seq) }

// Head returns the sequence number and hash of the last verified record.
func (r *Reader) Head() (uint64, Hash) { return r.idx.head() }

// Verify re-reads the log file from its start up to and including record
// seq and checks that every frame is intact and identical to the record this
// Reader verified when it loaded it, so a file edited after loading is
// detected. It fails with a *CorruptError naming the first record that
// differs, or an error if seq was never loaded.
func (r *Reader) Verify(seq uint64) error {
	if _, ok := r.idx.get(seq); !ok {
		return fmt.Errorf("execution log %s: record %d is not in the log", r.path, seq)
	}
	f, err := os.Open(r.path)
	if err != nil {
		return fmt.Errorf("execution log: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	var off int64
	var hdr [frameHeader]byte
	body := make([]byte, 0, 4096)
	for s := uint64(1); s <= seq; s++ {
		want, _ := r.idx.hashOf(s)
		bad := func(reason string) error {
			return &CorruptError{File: r.path, Seq: s, Offset: off, Reason: reason}
		}
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return bad("frame header unreadable: " + err.Error())
		}
		size := int(uint32(hdr[4])<<24 | uint32(hdr[5])<<16 | uint32(hdr[6])<<8 | uint32(hdr[7]))
		if string(hdr[:4]) != frameMagic || size > MaxRecordSize {
			return bad("frame header changed since the record was verified")
		}
		if cap(body) < size+frameTrailer {
			body = make([]byte, size+frameTrailer)
		}
		body = body[:size+frameTrailer]
		if _, err := io.ReadFull(br, body); err != nil {
			return bad("frame unreadable: " + err.Error())
		}
		buf := append(append([]byte{}, hdr[:]...), body...)
		_, _, h, reason := frameAt(buf)
		if reason != "" {
			return bad(reason)
		}
		if h != want {
			return bad(fmt.Sprintf("record hash is %s, but %s was verified when the log was loaded", h, want))
		}
		off += int64(len(buf))
	}
	return nil
}

// VerifyStream verifies a whole log read from rd (for example a copy of
// records.log) and returns its head. A torn last frame is reported as an
// error, since a finished copy should have none.
func VerifyStream(name string, rd io.Reader) (seq uint64, head Hash, err error) {
	buf, err := io.ReadAll(rd)
	if err != nil {
		return 0, Hash{}, fmt.Errorf("execution log %s: %w", name, err)
	}
	res, err := scan(name, buf, 0, 1, Hash{})
	if err != nil {
		return 0, Hash{}, err
	}
	if n := len(res.recs); n > 0 {
		seq, head = res.recs[n-1].Seq, res.recs[n-1].Hash
	}
	if res.tail != "" {
		return seq, head, &CorruptError{File: name, Seq: seq + 1, Offset: int64(res.consumed), Reason: "torn last record: " + res.tail}
	}
	return seq, head, nil
}
