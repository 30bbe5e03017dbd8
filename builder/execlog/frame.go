package execlog

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
)

// Frame layout (docs/execlog.md): magic "HXL1", body length as a big-endian
// uint32, the body (one JSON record), then the SHA-256 of the body.
const (
	frameMagic    = "HXL1"
	frameHeader   = 8
	frameTrailer  = sha256.Size
	frameOverhead = frameHeader + frameTrailer
	// MaxRecordSize bounds a record body; larger frames are invalid.
	MaxRecordSize = 16 << 20
)

// appendFrame appends the frame for body to dst and returns it with the
// body's hash.
func appendFrame(dst, body []byte) ([]byte, Hash) {
	h := Hash(sha256.Sum256(body))
	dst = append(dst, frameMagic...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(body)))
	dst = append(dst, body...)
	dst = append(dst, h[:]...)
	return dst, h
}

// frameAt checks the frame starting at buf[0]. It returns the frame's total
// length, its body and its hash, or a reason it is not a complete valid frame.
func frameAt(buf []byte) (n int, body []byte, h Hash, reason string) {
	n, reason = frameBounds(buf)
	if reason != "" {
		return 0, nil, h, reason
	}
	body = buf[frameHeader : n-frameTrailer]
	h = sha256.Sum256(body)
	if !bytes.Equal(h[:], buf[n-frameTrailer:n]) {
		return 0, nil, Hash{}, "record hash does not match its content"
	}
	return n, body, h, ""
}

// scanResult is what scan found in a byte range.
type scanResult struct {
	recs     []Record
	consumed int    // bytes of valid frames
	tail     string // non-empty: the bytes after consumed are a torn tail, and why
}

// scan reads frames from buf (which starts at file offset base), expecting
// the chain to continue at seq next with previous hash prev. A bad frame with
// no valid frame anywhere after it is a torn tail (reported in tail); a bad
// frame followed by a valid one, a record that does not decode, or a broken
// chain is a *CorruptError.
//
// Frame boundaries are found first; hashing and decoding then run in
// parallel; the chain is checked in order at the end.
func scan(file string, buf []byte, base int64, next uint64, prev Hash) (scanResult, error) {
	type frame struct {
		pos, n int
		h      Hash
		reason string // the frame is bad
		rec    Record
		err    error // the frame is intact but its record does not decode
	}
	var frames []frame
	pos := 0
	for pos < len(buf) {
		n, reason := frameBounds(buf[pos:])
		frames = append(frames, frame{pos: pos, n: n, reason: reason})
		if reason != "" {
			break
		}
		pos += n
	}
	check := func(f *frame) {
		if f.reason != "" {
			return
		}
		b := buf[f.pos : f.pos+f.n]
		body := b[frameHeader : f.n-frameTrailer]
		f.h = sha256.Sum256(body)
		if !bytes.Equal(f.h[:], b[f.n-frameTrailer:]) {
			f.reason = "record hash does not match its content"
			return
		}
		f.rec, f.err = decode(body)
	}
	workers := runtime.GOMAXPROCS(0)
	if len(frames) < 64 || workers < 2 {
		for i := range frames {
			check(&frames[i])
		}
	} else {
		var wg sync.WaitGroup
		chunk := (len(frames) + workers - 1) / workers
		for lo := 0; lo < len(frames); lo += chunk {
			hi := min(lo+chunk, len(frames))
			wg.Add(1)
			go func(fs []frame) {
				defer wg.Done()
				for i := range fs {
					check(&fs[i])
				}
			}(frames[lo:hi])
		}
		wg.Wait()
	}
	var res scanResult
	for i := range frames {
		f := &frames[i]
		if f.reason != "" {
			if j := resync(buf, f.pos+1); j >= 0 {
				return res, &CorruptError{File: file, Seq: next, Offset: base + int64(f.pos),
					Reason: fmt.Sprintf("%s, and a valid record follows at offset %d", f.reason, base+int64(j))}
			}
			res.tail = f.reason
			return res, nil
		}
		if f.err != nil {
			return res, &CorruptError{File: file, Seq: next, Offset: base + int64(f.pos), Reason: f.err.Error()}
		}
		rec := f.rec
		if rec.Seq != next {
			return res, &CorruptError{File: file, Seq: rec.Seq, Offset: base + int64(f.pos),
				Reason: fmt.Sprintf("sequence number %d where %d was expected (a record was deleted, inserted or moved)", rec.Seq, next)}
		}
		if rec.Prev != prev {
			return res, &CorruptError{File: file, Seq: rec.Seq, Offset: base + int64(f.pos),
				Reason: fmt.Sprintf("prev hash %s does not match the hash %s of record %d", rec.Prev, prev, next-1)}
		}
		rec.Hash = f.h
		res.recs = append(res.recs, rec)
		next++
		prev = f.h
		res.consumed = f.pos + f.n
	}
	return res, nil
}

// frameBounds checks a frame's header and that it is complete, and returns
// its total length.
func frameBounds(buf []byte) (int, string) {
	if len(buf) < frameHeader {
		return 0, fmt.Sprintf("incomplete frame header (%d bytes)", len(buf))
	}
	if string(buf[:4]) != frameMagic {
		return 0, fmt.Sprintf("bad frame magic %q", buf[:4])
	}
	size := binary.BigEndian.Uint32(buf[4:8])
	if size > MaxRecordSize {
		return 0, fmt.Sprintf("record length %d exceeds the limit %d", size, MaxRecordSize)
	}
	n := frameOverhead + int(size)
	if len(buf) < n {
		return 0, fmt.Sprintf("incomplete frame: %d of %d bytes", len(buf), n)
	}
	return n, ""
}

// resync returns the offset of the first complete valid frame at or after
// from, or -1.
func resync(buf []byte, from int) int {
	for from < len(buf) {
		i := bytes.Index(buf[from:], []byte(frameMagic))
		if i < 0 {
			return -1
		}
		j := from + i
		if _, _, _, reason := frameAt(buf[j:]); reason == "" {
			return j
		}
		from = j + 1
	}
	return -1
}
