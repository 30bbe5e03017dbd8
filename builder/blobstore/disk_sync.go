package blobstore

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// checkpointName is the file (DIR/synced) that holds, in decimal Unix
// nanoseconds, a time T such that every blob whose inode last changed before
// T is on stable storage. Only WithPeriodicSync writes and reads it.
const checkpointName = "synced"

// checkpointSlack covers the coarse clock the kernel stamps inodes with.
const checkpointSlack = time.Second

// readCheckpoint returns the recorded checkpoint, or the beginning of the
// Unix epoch (verify every blob) when there is none or it is unreadable.
func readCheckpoint(dir string) (time.Time, error) {
	b, err := os.ReadFile(filepath.Join(dir, checkpointName))
	if os.IsNotExist(err) {
		return time.Unix(0, 1), nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("blob store: %w", err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || n <= 0 {
		return time.Unix(0, 1), nil // unreadable: verify everything
	}
	return time.Unix(0, n), nil
}

// verifyFile reports whether the file at path holds exactly the blob d.
func verifyFile(path string, d digest.Digest) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	h := digest.NewHasher()
	if _, err := io.Copy(h, io.LimitReader(f, d.Size+1)); err != nil {
		return false
	}
	return h.Digest() == d
}

// checkpoint flushes the file system holding the store and records the
// time taken before the flush started.
func (s *Disk) checkpoint() error {
	t := time.Now()
	s.dirty.Store(false)
	d, err := os.Open(s.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("blob store: syncfs: %w", err)
	}
	tmp := filepath.Join(s.tmp, checkpointName)
	if err := os.WriteFile(tmp, []byte(strconv.FormatInt(t.UnixNano(), 10)+"\n"), 0o644); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	err = f.Sync()
	f.Close()
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, checkpointName)); err != nil {
		return err
	}
	return syncDir(s.dir)
}

func (s *Disk) syncLoop() {
	defer close(s.stopped)
	tick := time.NewTicker(s.periodic)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
			if s.dirty.Load() {
				if err := s.checkpoint(); err != nil {
					s.dirty.Store(true) // try again next time
				}
			}
		}
	}
}

// Close stops WithPeriodicSync's background syncing and records a final
// checkpoint. The store must not be used afterwards. Without
// WithPeriodicSync it does nothing.
func (s *Disk) Close() error {
	if s.periodic == 0 {
		return nil
	}
	var err error
	s.closeMu.Do(func() {
		close(s.stop)
		<-s.stopped
		err = s.checkpoint()
	})
	return err
}
