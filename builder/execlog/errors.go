package execlog

import (
	"errors"
	"fmt"
)

// ErrCorrupt is the category of every integrity failure: a damaged record in
// the middle of the log, a broken hash chain, or a file that changed under a
// reader. Match it with errors.Is; *CorruptError names the record.
var ErrCorrupt = errors.New("execution log is corrupt")

// ErrLocked is returned by Open when another process holds the log for writing.
var ErrLocked = errors.New("execution log is locked by another writer")

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("execution log is closed")

// CorruptError names the record where verification failed.
type CorruptError struct {
	File   string // the log file
	Seq    uint64 // the record's sequence number (the expected one if unreadable)
	Offset int64  // byte offset of the record's frame in File
	Reason string // what is wrong
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("execution log %s: record %d at offset %d: %s", e.File, e.Seq, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

var _ error = (*CorruptError)(nil)
