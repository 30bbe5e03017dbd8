package blobstore

import "errors"

// ErrFull is returned by Put when a bounded store cannot make room for a blob
// because everything it could evict is pinned. Retrying later may succeed.
var ErrFull = errors.New("blob store full")

// ErrOutOfRange is returned by Get when offset is outside [0, d.Size].
var ErrOutOfRange = errors.New("offset out of range")
