// Package execlog is the farm's execution log: an append-only, hash-chained
// record of every action the farm executed.
//
// The log is one file, DIR/records.log, of frames. Each frame holds one record
// encoded as JSON; the record carries its sequence number and the SHA-256 of
// the previous record's bytes, and the frame ends with the SHA-256 of the
// record's own bytes. Any edit, deletion or reordering breaks the chain and is
// reported naming the record. docs/execlog.md specifies the format precisely.
//
// Log (Open) is the single writer: Append returns once the record is on stable
// storage, and concurrent appends share one fsync. Reader (OpenReadOnly) reads
// the same file from another process without write access, while the writer
// appends, and picks up new records with Refresh.
package execlog

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/hallmark-build/hallmark/builder/digest"
)

// FormatVersion is the record format version written in every record ("v").
const FormatVersion = 1

// Record is one executed action. The writer assigns Seq, Prev and Hash; the
// caller fills the rest.
type Record struct {
	// Seq is the record's position in the log, starting at 1.
	Seq uint64
	// Prev is the hash of the previous record (zeros for the first).
	Prev Hash
	// Hash is the SHA-256 of this record's encoded bytes. It is not part of
	// those bytes; the frame carries it.
	Hash Hash

	// Tenant owns the action ("" until tenancy exists).
	Tenant string
	// Instance is the REAPI instance name the action was executed under.
	Instance string

	Action    digest.Digest // digest of the Action message
	Command   digest.Digest // digest of the Command message
	InputRoot digest.Digest // digest of the input root Directory message

	// Platform is the Command's (or Action's) platform properties, in order.
	Platform []Property

	Outputs           []OutputFile
	OutputDirectories []OutputDirectory
	OutputSymlinks    []OutputSymlink

	// Stdout and Stderr are the digests of the captured streams; the zero
	// Digest means none was captured.
	Stdout digest.Digest
	Stderr digest.Digest

	ExitCode int32
	// Worker identifies the worker that ran the action.
	Worker string

	Queued    time.Time
	Started   time.Time
	Completed time.Time

	// Request is the client's RequestMetadata, nil if it sent none.
	Request *RequestMetadata
}

// Property is one platform property.
type Property struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// OutputFile is one output file of an action. Path is relative to the
// action's working root (as in ActionResult.output_files).
type OutputFile struct {
	Path         string
	Digest       digest.Digest
	IsExecutable bool
}

// OutputDirectory is one output directory of an action.
type OutputDirectory struct {
	Path string
	// Tree is the digest of the REAPI Tree message in the CAS.
	Tree digest.Digest
	// Root is the digest of the Tree's root Directory message, which is how
	// the directory appears inside a later action's input root. Zero if the
	// executor did not compute it.
	Root digest.Digest
}

// OutputSymlink is one output symbolic link of an action.
type OutputSymlink struct {
	Path   string `json:"path"`
	Target string `json:"target"`
}

// RequestMetadata is what the client sent in the REAPI RequestMetadata header.
// It is a claim by the client, recorded as such.
type RequestMetadata struct {
	ToolName                string `json:"tool_name,omitempty"`
	ToolVersion             string `json:"tool_version,omitempty"`
	ToolInvocationID        string `json:"tool_invocation_id,omitempty"`
	CorrelatedInvocationsID string `json:"correlated_invocations_id,omitempty"`
	ActionID                string `json:"action_id,omitempty"`
	TargetID                string `json:"target_id,omitempty"`
	ActionMnemonic          string `json:"action_mnemonic,omitempty"`
	ConfigurationID         string `json:"configuration_id,omitempty"`
}

// wireRecord is the JSON body of a frame. Digests are "hash/size" strings.
type wireRecord struct {
	V                 int              `json:"v"`
	Seq               uint64           `json:"seq"`
	Prev              string           `json:"prev"`
	Tenant            string           `json:"tenant"`
	Instance          string           `json:"instance"`
	Action            string           `json:"action"`
	Command           string           `json:"command"`
	InputRoot         string           `json:"input_root"`
	Platform          []Property       `json:"platform,omitempty"`
	Outputs           []wireOutputFile `json:"outputs,omitempty"`
	OutputDirectories []wireOutputDir  `json:"output_directories,omitempty"`
	OutputSymlinks    []OutputSymlink  `json:"output_symlinks,omitempty"`
	Stdout            string           `json:"stdout,omitempty"`
	Stderr            string           `json:"stderr,omitempty"`
	ExitCode          int32            `json:"exit_code"`
	Worker            string           `json:"worker"`
	Queued            string           `json:"queued,omitempty"`
	Started           string           `json:"started,omitempty"`
	Completed         string           `json:"completed,omitempty"`
	Request           *RequestMetadata `json:"request,omitempty"`
}

type wireOutputFile struct {
	Path       string `json:"path"`
	Digest     string `json:"digest"`
	Executable bool   `json:"executable,omitempty"`
}

type wireOutputDir struct {
	Path string `json:"path"`
	Tree string `json:"tree"`
	Root string `json:"root,omitempty"`
}

const timeLayout = time.RFC3339Nano

func digestString(d digest.Digest) string {
	if d == (digest.Digest{}) {
		return ""
	}
	return d.String()
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

// encode returns the JSON body of r. Seq and Prev must be set.
func encode(r *Record) ([]byte, error) {
	w := wireRecord{
		V:         FormatVersion,
		Seq:       r.Seq,
		Prev:      r.Prev.String(),
		Tenant:    r.Tenant,
		Instance:  r.Instance,
		Action:    digestString(r.Action),
		Command:   digestString(r.Command),
		InputRoot: digestString(r.InputRoot),
		Platform:  r.Platform,
		Stdout:    digestString(r.Stdout),
		Stderr:    digestString(r.Stderr),
		ExitCode:  r.ExitCode,
		Worker:    r.Worker,
		Queued:    fmtTime(r.Queued),
		Started:   fmtTime(r.Started),
		Completed: fmtTime(r.Completed),
		Request:   r.Request,
	}
	for _, o := range r.Outputs {
		if o.Digest == (digest.Digest{}) {
			return nil, fmt.Errorf("output file %q has no digest", o.Path)
		}
		w.Outputs = append(w.Outputs, wireOutputFile{Path: o.Path, Digest: o.Digest.String(), Executable: o.IsExecutable})
	}
	for _, o := range r.OutputDirectories {
		if o.Tree == (digest.Digest{}) {
			return nil, fmt.Errorf("output directory %q has no tree digest", o.Path)
		}
		w.OutputDirectories = append(w.OutputDirectories, wireOutputDir{Path: o.Path, Tree: o.Tree.String(), Root: digestString(o.Root)})
	}
	w.OutputSymlinks = r.OutputSymlinks
	return json.Marshal(&w)
}

// decode parses a frame body. It validates every digest and time, but not
// the chain (the scanner does that).
func decode(body []byte) (Record, error) {
	var w wireRecord
	if err := json.Unmarshal(body, &w); err != nil {
		return Record{}, fmt.Errorf("record is not valid JSON: %v", err)
	}
	if w.V != FormatVersion {
		return Record{}, fmt.Errorf("record format version %d is not supported (want %d)", w.V, FormatVersion)
	}
	r := Record{
		Seq:      w.Seq,
		Tenant:   w.Tenant,
		Instance: w.Instance,
		Platform: w.Platform,
		ExitCode: w.ExitCode,
		Worker:   w.Worker,
		Request:  w.Request,
	}
	var err error
	if r.Prev, err = ParseHash(w.Prev); err != nil {
		return Record{}, fmt.Errorf("field prev: %v", err)
	}
	req := func(field, s string) (digest.Digest, error) {
		d, err := digest.Parse(s)
		if err != nil {
			return digest.Digest{}, fmt.Errorf("field %s: %v", field, err)
		}
		return d, nil
	}
	opt := func(field, s string) (digest.Digest, error) {
		if s == "" {
			return digest.Digest{}, nil
		}
		return req(field, s)
	}
	if r.Action, err = req("action", w.Action); err != nil {
		return Record{}, err
	}
	if r.Command, err = req("command", w.Command); err != nil {
		return Record{}, err
	}
	if r.InputRoot, err = req("input_root", w.InputRoot); err != nil {
		return Record{}, err
	}
	if r.Stdout, err = opt("stdout", w.Stdout); err != nil {
		return Record{}, err
	}
	if r.Stderr, err = opt("stderr", w.Stderr); err != nil {
		return Record{}, err
	}
	if len(w.Outputs) > 0 {
		r.Outputs = make([]OutputFile, len(w.Outputs))
		for i, o := range w.Outputs {
			d, err := req(fmt.Sprintf("outputs[%d].digest", i), o.Digest)
			if err != nil {
				return Record{}, err
			}
			r.Outputs[i] = OutputFile{Path: o.Path, Digest: d, IsExecutable: o.Executable}
		}
	}
	for i, o := range w.OutputDirectories {
		t, err := req(fmt.Sprintf("output_directories[%d].tree", i), o.Tree)
		if err != nil {
			return Record{}, err
		}
		root, err := opt(fmt.Sprintf("output_directories[%d].root", i), o.Root)
		if err != nil {
			return Record{}, err
		}
		r.OutputDirectories = append(r.OutputDirectories, OutputDirectory{Path: o.Path, Tree: t, Root: root})
	}
	r.OutputSymlinks = w.OutputSymlinks
	for _, tf := range []struct {
		name string
		s    string
		t    *time.Time
	}{{"queued", w.Queued, &r.Queued}, {"started", w.Started, &r.Started}, {"completed", w.Completed, &r.Completed}} {
		if tf.s == "" {
			continue
		}
		t, err := time.Parse(timeLayout, tf.s)
		if err != nil {
			return Record{}, fmt.Errorf("field %s: %v", tf.name, err)
		}
		*tf.t = t
	}
	return r, nil
}
