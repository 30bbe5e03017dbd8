// Package actioncache stores REAPI ActionResults by instance name and action
// digest.
//
// Cache is the interface the servers and the scheduler use; Disk is the
// embedded implementation, Memory is for tests, and NewCompleteOnly wraps a
// Cache so that a result is served only while every blob it references is
// in the CAS.
package actioncache

import (
	"context"
	"errors"
	"fmt"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// ErrNotFound is returned (wrapped) by Get when there is no usable result.
var ErrNotFound = errors.New("action result not found")

// ErrInvalid is returned (wrapped) for an ActionResult that is malformed: a
// bad digest in it, or an output directory Tree that does not parse.
var ErrInvalid = errors.New("invalid action result")

// Cache maps (instance name, action digest) to an ActionResult. All methods
// are safe for concurrent use. Results returned are the caller's to modify.
type Cache interface {
	Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error)
	Put(ctx context.Context, instance string, action digest.Digest, ar *repb.ActionResult) error
}

// NotFoundError names the action whose result is absent or unusable.
type NotFoundError struct {
	Instance string
	Action   digest.Digest
	// Missing lists the CAS blobs whose absence made a stored result
	// unusable; it is empty when there is no stored result at all.
	Missing []digest.Digest
}

func (e *NotFoundError) Error() string {
	if len(e.Missing) > 0 {
		return fmt.Sprintf("action result for %s in instance %q is incomplete: %d referenced blob(s) missing from the CAS, first %s",
			e.Action, e.Instance, len(e.Missing), e.Missing[0])
	}
	return fmt.Sprintf("no action result for %s in instance %q", e.Action, e.Instance)
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

var _ error = (*NotFoundError)(nil)

type key struct {
	instance string
	action   digest.Digest
}

// Memory is a Cache in memory, for tests.
type Memory struct {
	mu sync.Mutex
	m  map[key][]byte
}

var _ Cache = (*Memory)(nil)

// NewMemory returns an empty in-memory cache.
func NewMemory() *Memory { return &Memory{m: map[key][]byte{}} }

// Get implements Cache.
func (c *Memory) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	c.mu.Lock()
	b, ok := c.m[key{instance, action}]
	c.mu.Unlock()
	if !ok {
		return nil, &NotFoundError{Instance: instance, Action: action}
	}
	ar := &repb.ActionResult{}
	if err := proto.Unmarshal(b, ar); err != nil {
		return nil, err
	}
	return ar, nil
}

// Put implements Cache.
func (c *Memory) Put(ctx context.Context, instance string, action digest.Digest, ar *repb.ActionResult) error {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(ar)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.m[key{instance, action}] = b
	c.mu.Unlock()
	return nil
}
