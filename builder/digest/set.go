package digest

import "sort"

// Set is a set of digests.
type Set map[Digest]struct{}

// Add puts d into s.
func (s Set) Add(d Digest) { s[d] = struct{}{} }

// Has reports whether d is in s.
func (s Set) Has(d Digest) bool { _, ok := s[d]; return ok }

// Sorted returns the members of s in a stable order (by hash, then size).
func (s Set) Sorted() []Digest {
	out := make([]Digest, 0, len(s))
	for d := range s {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Hash != out[j].Hash {
			return out[i].Hash < out[j].Hash
		}
		return out[i].Size < out[j].Size
	})
	return out
}
