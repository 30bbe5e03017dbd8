package publish

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/hallmark-build/hallmark/signer/dsse"
)

// TUF target paths of a hallmark repository.
const (
	// SignerTargetPrefix prefixes the targets that are signers' public keys:
	// "signers/<name>.pub", PEM PKIX.
	SignerTargetPrefix = "signers/"
	// BuildersTarget is a JSON array of the trusted builder ids.
	BuildersTarget = "builders.json"
)

// Default expiries of the four top-level roles.
var DefaultExpiry = map[string]time.Duration{
	metadata.ROOT:      365 * 24 * time.Hour,
	metadata.TARGETS:   90 * 24 * time.Hour,
	metadata.SNAPSHOT:  7 * 24 * time.Hour,
	metadata.TIMESTAMP: 24 * time.Hour,
}

// TUFRepo is a hallmark TUF repository on disk:
//
//	DIR/keys/<role>-<n>.pem   role private keys (ed25519, PKCS#8 PEM, mode 0600)
//	DIR/config.json           expiries
//	DIR/repository/           what is served over HTTP: <v>.root.json,
//	                          root.json, targets.json, snapshot.json,
//	                          timestamp.json, targets/<path>
//
// Consistent snapshots are off: metadata is served by role name, the
// current version replacing the previous one. It is not safe for concurrent
// use by several processes.
type TUFRepo struct {
	dir    string
	cfg    repoConfig
	keys   map[string][]signature.Signer
	root   *metadata.Metadata[metadata.RootType]
	tgts   *metadata.Metadata[metadata.TargetsType]
	snap   *metadata.Metadata[metadata.SnapshotType]
	tstamp *metadata.Metadata[metadata.TimestampType]
}

type repoConfig struct {
	Expiry map[string]Duration `json:"expiry"`
}

// Duration is a time.Duration written as a Go duration string in JSON.
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// TUFInitOptions configures InitTUF.
type TUFInitOptions struct {
	RootKeys      int // number of root keys; default 1
	RootThreshold int // signatures needed on root; default 1, at most RootKeys
	// Expiry overrides DefaultExpiry per role name.
	Expiry map[string]time.Duration
}

// InitTUF creates a new repository in dir (which must not hold one yet),
// with fresh role keys and empty targets, and writes version 1 of every role.
func InitTUF(dir string, o TUFInitOptions, now time.Time) (*TUFRepo, error) {
	if o.RootKeys == 0 {
		o.RootKeys = 1
	}
	if o.RootThreshold == 0 {
		o.RootThreshold = 1
	}
	if o.RootKeys < 1 || o.RootThreshold < 1 || o.RootThreshold > o.RootKeys {
		return nil, fmt.Errorf("tuf: root threshold %d with %d root keys: need 1 <= threshold <= keys", o.RootThreshold, o.RootKeys)
	}
	if _, err := os.Stat(filepath.Join(dir, "repository", "1.root.json")); err == nil {
		return nil, fmt.Errorf("tuf: %s already holds a repository", dir)
	}
	for _, d := range []string{"keys", "repository/targets"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "keys"), 0o700); err != nil {
		return nil, err
	}
	r := &TUFRepo{dir: dir, keys: map[string][]signature.Signer{}, cfg: repoConfig{Expiry: map[string]Duration{}}}
	for role, d := range DefaultExpiry {
		r.cfg.Expiry[role] = Duration(d)
	}
	for role, d := range o.Expiry {
		if _, ok := DefaultExpiry[role]; !ok || d <= 0 {
			return nil, fmt.Errorf("tuf: bad expiry %s for role %q", d, role)
		}
		r.cfg.Expiry[role] = Duration(d)
	}
	r.root = metadata.Root(r.expires(metadata.ROOT, now))
	r.root.Signed.ConsistentSnapshot = false
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		n := 1
		if role == metadata.ROOT {
			n = o.RootKeys
		}
		for i := 0; i < n; i++ {
			_, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return nil, err
			}
			der, err := x509.MarshalPKCS8PrivateKey(priv)
			if err != nil {
				return nil, err
			}
			p := filepath.Join(dir, "keys", fmt.Sprintf("%s-%d.pem", role, i))
			if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
				return nil, err
			}
			if err := r.addSigner(role, priv); err != nil {
				return nil, err
			}
			k, err := metadata.KeyFromPublicKey(priv.Public())
			if err != nil {
				return nil, err
			}
			if err := r.root.Signed.AddKey(k, role); err != nil {
				return nil, err
			}
		}
	}
	r.root.Signed.Roles[metadata.ROOT].Threshold = o.RootThreshold
	r.tgts = metadata.Targets(r.expires(metadata.TARGETS, now))
	r.snap = metadata.Snapshot(r.expires(metadata.SNAPSHOT, now))
	r.tstamp = metadata.Timestamp(r.expires(metadata.TIMESTAMP, now))
	cb, err := json.MarshalIndent(r.cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cb, 0o644); err != nil {
		return nil, err
	}
	if err := r.writeRoot(); err != nil {
		return nil, err
	}
	if err := r.writeTargets(); err != nil {
		return nil, err
	}
	return r, r.SetBuilders(nil, now)
}

// OpenTUF opens the repository in dir.
func OpenTUF(dir string) (*TUFRepo, error) {
	r := &TUFRepo{dir: dir, keys: map[string][]signature.Signer{}}
	cb, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("tuf: %s is not a hallmark TUF repository: %w", dir, err)
	}
	if err := json.Unmarshal(cb, &r.cfg); err != nil {
		return nil, fmt.Errorf("tuf: %s/config.json: %w", dir, err)
	}
	repo := filepath.Join(dir, "repository")
	if r.root, err = metadata.Root().FromFile(filepath.Join(repo, "root.json")); err != nil {
		return nil, fmt.Errorf("tuf: reading root: %w", err)
	}
	if r.tgts, err = metadata.Targets().FromFile(filepath.Join(repo, "targets.json")); err != nil {
		return nil, fmt.Errorf("tuf: reading targets: %w", err)
	}
	if r.snap, err = metadata.Snapshot().FromFile(filepath.Join(repo, "snapshot.json")); err != nil {
		return nil, fmt.Errorf("tuf: reading snapshot: %w", err)
	}
	if r.tstamp, err = metadata.Timestamp().FromFile(filepath.Join(repo, "timestamp.json")); err != nil {
		return nil, fmt.Errorf("tuf: reading timestamp: %w", err)
	}
	ents, err := os.ReadDir(filepath.Join(dir, "keys"))
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		role, _, ok := strings.Cut(e.Name(), "-")
		if !ok || !strings.HasSuffix(e.Name(), ".pem") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "keys", e.Name()))
		if err != nil {
			return nil, err
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, fmt.Errorf("tuf: key %s is not PEM", e.Name())
		}
		priv, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("tuf: key %s: %w", e.Name(), err)
		}
		if err := r.addSigner(role, priv); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func (r *TUFRepo) addSigner(role string, priv crypto.PrivateKey) error {
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		return fmt.Errorf("tuf: loading %s key: %w", role, err)
	}
	r.keys[role] = append(r.keys[role], s)
	return nil
}

func (r *TUFRepo) expires(role string, now time.Time) time.Time {
	return now.Add(time.Duration(r.cfg.Expiry[role])).UTC().Truncate(time.Second)
}

// Dir is the directory to serve over HTTP.
func (r *TUFRepo) Dir() string { return filepath.Join(r.dir, "repository") }

// Handler serves the repository (metadata at /, targets under /targets/).
func (r *TUFRepo) Handler() http.Handler { return http.FileServer(http.Dir(r.Dir())) }

// RootJSON returns the current root metadata, the file gates pin.
func (r *TUFRepo) RootJSON() ([]byte, error) { return r.root.ToBytes(true) }

var targetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// AddSignerKey adds (or replaces) the signer public key called name, PEM
// PKIX, as target "signers/<name>.pub", and publishes new targets,
// snapshot and timestamp metadata.
func (r *TUFRepo) AddSignerKey(name string, pemBytes []byte, now time.Time) error {
	if !targetName.MatchString(name) {
		return fmt.Errorf("tuf: key name %q: use letters, digits, '.', '_' and '-'", name)
	}
	pub, err := dsse.ParsePublicKeyPEM(pemBytes)
	if err != nil {
		return fmt.Errorf("tuf: key %q: %w", name, err)
	}
	if _, err := dsse.NewVerifier(pub); err != nil {
		return fmt.Errorf("tuf: key %q: %w", name, err)
	}
	return r.putTarget(SignerTargetPrefix+name+".pub", pemBytes, now)
}

// RevokeSignerKey removes the signer key called name.
func (r *TUFRepo) RevokeSignerKey(name string, now time.Time) error {
	p := SignerTargetPrefix + name + ".pub"
	if _, ok := r.tgts.Signed.Targets[p]; !ok {
		return fmt.Errorf("tuf: no signer key %q in the repository (have %s)", name, strings.Join(r.SignerKeys(), ", "))
	}
	delete(r.tgts.Signed.Targets, p)
	_ = os.Remove(filepath.Join(r.Dir(), "targets", filepath.FromSlash(p)))
	return r.publish(now)
}

// SignerKeys lists the names of the signer keys.
func (r *TUFRepo) SignerKeys() []string {
	var out []string
	for p := range r.tgts.Signed.Targets {
		if n, ok := strings.CutPrefix(p, SignerTargetPrefix); ok {
			out = append(out, strings.TrimSuffix(n, ".pub"))
		}
	}
	sort.Strings(out)
	return out
}

// SetBuilders replaces the list of trusted builder ids.
func (r *TUFRepo) SetBuilders(ids []string, now time.Time) error {
	if ids == nil {
		ids = []string{}
	}
	b, err := json.Marshal(ids)
	if err != nil {
		return err
	}
	return r.putTarget(BuildersTarget, b, now)
}

func (r *TUFRepo) putTarget(p string, data []byte, now time.Time) error {
	tf, err := metadata.TargetFile().FromBytes(p, data, "sha256")
	if err != nil {
		return err
	}
	local := filepath.Join(r.Dir(), "targets", filepath.FromSlash(p))
	if err := os.MkdirAll(filepath.Dir(local), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(local, data, 0o644); err != nil {
		return err
	}
	r.tgts.Signed.Targets[p] = tf
	return r.publish(now)
}

// publish bumps and re-signs targets, snapshot and timestamp.
func (r *TUFRepo) publish(now time.Time) error {
	r.tgts.Signed.Version++
	r.tgts.Signed.Expires = r.expires(metadata.TARGETS, now)
	if err := r.writeTargets(); err != nil {
		return err
	}
	r.snap.Signed.Meta["targets.json"] = metadata.MetaFile(r.tgts.Signed.Version)
	return r.Refresh(now)
}

// Refresh re-signs snapshot and timestamp with new versions and expiries,
// as a repository must do before the timestamp expires (run it from cron).
func (r *TUFRepo) Refresh(now time.Time) error {
	if r.root.Signed.IsExpired(now.Add(time.Duration(r.cfg.Expiry[metadata.TIMESTAMP]))) {
		return errors.New("tuf: root metadata expires before the next timestamp would; rotate root first")
	}
	r.snap.Signed.Version++
	r.snap.Signed.Expires = r.expires(metadata.SNAPSHOT, now)
	if err := sign(r.snap, r.keys[metadata.SNAPSHOT]); err != nil {
		return err
	}
	if err := r.snap.ToFile(filepath.Join(r.Dir(), "snapshot.json"), true); err != nil {
		return err
	}
	r.tstamp.Signed.Version++
	r.tstamp.Signed.Expires = r.expires(metadata.TIMESTAMP, now)
	r.tstamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.snap.Signed.Version)
	if err := sign(r.tstamp, r.keys[metadata.TIMESTAMP]); err != nil {
		return err
	}
	return r.tstamp.ToFile(filepath.Join(r.Dir(), "timestamp.json"), true)
}

func (r *TUFRepo) writeTargets() error {
	if err := sign(r.tgts, r.keys[metadata.TARGETS]); err != nil {
		return err
	}
	return r.tgts.ToFile(filepath.Join(r.Dir(), "targets.json"), true)
}

func (r *TUFRepo) writeRoot() error {
	if err := sign(r.root, r.keys[metadata.ROOT]); err != nil {
		return err
	}
	v := r.root.Signed.Version
	if err := r.root.ToFile(filepath.Join(r.Dir(), fmt.Sprintf("%d.root.json", v)), true); err != nil {
		return err
	}
	return r.root.ToFile(filepath.Join(r.Dir(), "root.json"), true)
}

func sign[T metadata.Roles](m *metadata.Metadata[T], keys []signature.Signer) error {
	if len(keys) == 0 {
		return errors.New("tuf: no key for role")
	}
	m.ClearSignatures()
	for _, k := range keys {
		if _, err := m.Sign(k); err != nil {
			return fmt.Errorf("tuf: signing: %w", err)
		}
	}
	return nil
}
