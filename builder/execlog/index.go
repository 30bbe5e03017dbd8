package execlog

import (
	"sync"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// index holds the verified records in memory with lookups by output and
// action digest. It is safe for concurrent use.
type index struct {
	mu       sync.RWMutex
	recs     []Record // recs[i].Seq == i+1
	byOutput map[digest.Digest][]uint32
	byAction map[digest.Digest][]uint32
}

func newIndex() *index {
	return &index{byOutput: map[digest.Digest][]uint32{}, byAction: map[digest.Digest][]uint32{}}
}

func (x *index) add(recs []Record) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, r := range recs {
		i := uint32(len(x.recs))
		x.recs = append(x.recs, r)
		x.byAction[r.Action] = append(x.byAction[r.Action], i)
		seen := map[digest.Digest]bool{}
		put := func(d digest.Digest) {
			if d == (digest.Digest{}) || seen[d] {
				return
			}
			seen[d] = true
			x.byOutput[d] = append(x.byOutput[d], i)
		}
		for _, o := range r.Outputs {
			put(o.Digest)
		}
		for _, o := range r.OutputDirectories {
			put(o.Tree)
			put(o.Root)
		}
	}
}

func (x *index) pick(m map[digest.Digest][]uint32, d digest.Digest) []Record {
	x.mu.RLock()
	defer x.mu.RUnlock()
	is := m[d]
	if len(is) == 0 {
		return nil
	}
	out := make([]Record, len(is))
	for k, i := range is {
		out[k] = x.recs[i]
	}
	return out
}

func (x *index) lookup(d digest.Digest) []Record         { return x.pick(x.byOutput, d) }
func (x *index) byActionDigest(d digest.Digest) []Record { return x.pick(x.byAction, d) }

func (x *index) get(seq uint64) (Record, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if seq == 0 || seq > uint64(len(x.recs)) {
		return Record{}, false
	}
	return x.recs[seq-1], true
}

func (x *index) head() (uint64, Hash) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.recs) == 0 {
		return 0, Hash{}
	}
	r := x.recs[len(x.recs)-1]
	return r.Seq, r.Hash
}

func (x *index) hashOf(seq uint64) (Hash, bool) {
	r, ok := x.get(seq)
	return r.Hash, ok
}
