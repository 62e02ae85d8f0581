// Package auditcli is the "tandem audit" command: verify the tamper-evident
// audit log, print inclusion proofs, and show events (M10, M24).
package auditcli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"tandem.dev/tandem/internal/clock"
	"time"

	"github.com/spf13/cobra"

	"tandem.dev/tandem/internal/audit"
	"tandem.dev/tandem/internal/safetext"
	"tandem.dev/tandem/internal/syslog"
	"tandem.dev/tandem/internal/vault"
)

// Paths are what a configuration says about where the audit log is.
type Paths struct {
	DataDir     string // the log lives in <DataDir>/audit
	WitnessFile string // the configured witness copy of the checkpoints, if any
	// Keys opens the vault with the configured KEK, to decrypt records;
	// nil when no KEK is known.
	Keys func() (audit.KeyReader, error)
	// Cluster is set when the gateway is a node of a cluster.
	Cluster *Cluster
}

// Resolver maps a --config path to Paths.
type Resolver func(configPath string) (Paths, error)

// Command returns the "audit" command.
func Command(resolve Resolver) *cobra.Command {
	root := &cobra.Command{
		Use:   "audit",
		Short: "Verify and read the tamper-evident audit log",
	}
	root.AddCommand(verifyCmd(resolve), proofCmd(resolve), showCmd(resolve, clock.Now))
	return root
}

// location holds the flags that say where the log is, and the KEK that
// opens its vault when --data is given.
type location struct {
	config, data      string
	kekFile, ageIdent string
}

func (l *location) register(c *cobra.Command) {
	c.Flags().StringVarP(&l.config, "config", "c", "", "Tandem config file (the log is in <data dir>/audit)")
	c.Flags().StringVar(&l.data, "data", "", "data directory, instead of --config")
}

// registerKEK adds the flags that name the KEK for --data.
func (l *location) registerKEK(c *cobra.Command) {
	c.Flags().StringVar(&l.kekFile, "kek-file", "", "with --data: the key-encryption key file that opens <data>/vault")
	c.Flags().StringVar(&l.ageIdent, "age-identity", "", "with --data: the age identity that opens <data>/vault")
}

// keys opens the vault that decrypts the log's records: the configured
// one, or with --data the one the KEK flags open. It returns nil, nil
// when no KEK is known.
func (l *location) keys(p Paths) (audit.KeyReader, error) {
	var kek vault.KEK
	var err error
	switch {
	case l.kekFile != "" && l.ageIdent != "":
		return nil, errors.New("give either --kek-file or --age-identity, not both")
	case l.kekFile != "":
		kek, err = vault.FileKEK(l.kekFile)
	case l.ageIdent != "":
		kek, err = vault.AgeKEK(l.ageIdent)
	case p.Keys != nil:
		return p.Keys()
	default:
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return vault.Open(filepath.Join(p.DataDir, "vault"), kek)
}

// dir returns the audit log directory.
func (l *location) dir(resolve Resolver) (string, error) {
	p, err := l.paths(resolve)
	return filepath.Join(p.DataDir, "audit"), err
}

// paths returns what --data or --config say about the log's location.
func (l *location) paths(resolve Resolver) (Paths, error) {
	switch {
	case l.data != "" && l.config != "":
		return Paths{}, errors.New("give either --config or --data, not both")
	case l.data != "":
		return Paths{DataDir: l.data}, nil
	case resolve == nil:
		return Paths{}, errors.New("no --data given")
	}
	p, err := resolve(l.config)
	if err != nil {
		return Paths{}, fmt.Errorf("resolve data directory: %w", err)
	}
	return p, nil
}

func verifyCmd(resolve Resolver) *cobra.Command {
	var loc location
	var pubkey, witness, witnessSyslog string
	var deep bool
	var nodeLogs map[string]string
	c := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's Merkle tree, records and signed checkpoints",
		Long: "Recomputes the Merkle tree from the records, checks every record, every\n" +
			"checkpoint signature and root, and the consistency between checkpoints.\n" +
			"Pass --pubkey with a copy of the verifier key kept outside the data\n" +
			"directory, and --witness with the witness checkpoint file, for a check\n" +
			"that does not trust the directory under test.\n\n" +
			"On a node of a cluster it also checks the log against the latest\n" +
			"checkpoint every peer co-signed, and each peer's log given with\n" +
			"--node-log NODE=DIR against this node's co-signed copy of its\n" +
			"checkpoints: one result for the cluster.",
		Example: "  tandem audit verify -c /etc/tandem/tandem.yaml --pubkey /secure/audit.pub\n" +
			"  tandem audit verify -c node-a.yaml --node-log b=/mnt/node-b/data   # node b's log, against a's copy",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := loc.paths(resolve)
			if err != nil {
				return err
			}
			dir := filepath.Join(paths.DataDir, "audit")
			if witnessSyslog != "" {
				if witness != "" {
					return errors.New("give --witness or --witness-syslog, not both: one witness per check")
				}
				w, cleanup, err := syslogWitness(witnessSyslog)
				if err != nil {
					return err
				}
				defer cleanup()
				witness = w
			}
			if witness == "" {
				witness = paths.WitnessFile
			}
			out := cmd.OutOrStdout()
			var key string
			if pubkey != "" {
				b, err := os.ReadFile(pubkey)
				if err != nil {
					return fmt.Errorf("read verifier key: %w", err)
				}
				key = strings.TrimSpace(string(b))
			} else {
				if key, err = audit.PublicKey(dir); err != nil {
					return err
				}
				fmt.Fprintln(out, "note: verifier key taken from the log directory itself; pass --pubkey for an independent check")
			}
			rep, err := runVerify(out, &loc, paths, dir, key, witness, deep)
			if err != nil {
				return err
			}
			printReport(out, rep, witness != "")
			if len(nodeLogs) > 0 && paths.Cluster == nil {
				return errors.New("--node-log needs --config of a node of a cluster (cluster.node)")
			}
			if paths.Cluster != nil {
				good, err := verifyCluster(out, paths.Cluster, dir, key, nodeLogs)
				if err != nil {
					return err
				}
				if !good {
					return errors.New("cluster verification FAILED: see the lines above")
				}
			}
			if !rep.OK() {
				if rep.Diverges >= 0 {
					return fmt.Errorf("audit log verification FAILED: the log diverges from the witnessed checkpoint at size %d", rep.Diverges)
				}
				if rep.FirstBad >= 0 {
					return fmt.Errorf("audit log verification FAILED: first bad record %d", rep.FirstBad)
				}
				return errors.New("audit log verification FAILED")
			}
			return nil
		},
	}
	loc.register(c)
	loc.registerKEK(c)
	c.Flags().StringVar(&pubkey, "pubkey", "", "file with the note verifier key (default: audit.pub in the log directory)")
	c.Flags().BoolVar(&deep, "deep", false, "also decode every record, check its canonical form and decrypt every part with the vault (slower)")
	c.Flags().StringVar(&witness, "witness", "", "witness checkpoint file to check as well (default: audit.witness_file of --config)")
	c.Flags().StringToStringVar(&nodeLogs, "node-log", nil, "NODE=DIR: a peer's data (or audit) directory, checked against this node's co-signed copy of its checkpoints (repeatable)")
	c.Flags().StringVar(&witnessSyslog, "witness-syslog", "", "a central log server's file (one message per line, as rsyslog writes it):\n"+
		"check against the signed checkpoints the gateway sent there instead of the witness file")
	return c
}

// syslogWitness collects the checkpoints found in a collector's file into
// a temporary witness file, which Verify reads like any other; cleanup
// removes it.
func syslogWitness(path string) (string, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("--witness-syslog: %w", err)
	}
	defer f.Close()
	notes, err := syslog.Checkpoints(f)
	if err != nil {
		return "", nil, fmt.Errorf("--witness-syslog %s: %w", path, err)
	}
	if len(notes) == 0 {
		return "", nil, fmt.Errorf("--witness-syslog %s: no checkpoint messages found", path)
	}
	tmp, err := os.CreateTemp("", "tandem-witness-*")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.Remove(tmp.Name()) }
	for _, n := range notes {
		if _, err := tmp.Write(n); err != nil {
			tmp.Close()
			cleanup()
			return "", nil, err
		}
	}
	if err := tmp.Close(); err != nil {
		cleanup()
		return "", nil, err
	}
	return tmp.Name(), cleanup, nil
}

// runVerify verifies without keys, or deep with the vault when a KEK is
// known: then a part that does not decrypt with an existing key fails,
// and shredded parts are counted.
func runVerify(out io.Writer, loc *location, paths Paths, dir, key, witness string, deep bool) (*audit.Report, error) {
	if !deep {
		return audit.Verify(dir, key, witness)
	}
	keys, err := loc.keys(paths)
	if err != nil {
		return nil, fmt.Errorf("open the vault for --deep: %w", err)
	}
	if keys == nil {
		fmt.Fprintln(out, "note: no key-encryption key given; parts are checked by their hashes but not decrypted")
	}
	return audit.VerifyDeep(dir, key, witness, keys)
}

func printReport(w io.Writer, rep *audit.Report, witness bool) {
	fmt.Fprintf(w, "records:         %d\n", rep.Records)
	fmt.Fprintf(w, "checkpoints:     %d valid, last at size %d\n", rep.Checkpoints, rep.LastCheckpoint)
	if witness {
		fmt.Fprintf(w, "witness:         %d valid checkpoints\n", rep.WitnessCheckpoints)
	}
	if rep.Segments > 1 {
		fmt.Fprintf(w, "segments:        %d (the counts above are the current segment's)\n", rep.Segments)
	}
	if rep.Root != "" {
		fmt.Fprintf(w, "root:            %s\n", rep.Root)
	}
	for _, s := range rep.SigningKeys {
		fmt.Fprintf(w, "signing key:     %s\n", safetext.Line(s))
	}
	for _, s := range rep.Shredded {
		fmt.Fprintf(w, "shredded: %s\n", safetext.Line(s.String()))
	}
	for _, s := range rep.Warnings {
		fmt.Fprintf(w, "warning: %s\n", safetext.Line(s))
	}
	for _, s := range rep.Gaps {
		fmt.Fprintf(w, "gap: %s\n", safetext.Line(s))
	}
	for _, s := range rep.Proven() {
		fmt.Fprintf(w, "proven: %s\n", safetext.Line(s))
	}
	for _, s := range rep.Caveats {
		fmt.Fprintf(w, "not proven: %s\n", safetext.Line(s))
	}
	if rep.OK() && len(rep.Gaps) > 0 {
		fmt.Fprintf(w, "result:          OK, with %d recorded gap(s): records lost in a recovery (see gap lines)\n", len(rep.Gaps))
		return
	}
	if rep.OK() {
		fmt.Fprintln(w, "result:          OK")
		return
	}
	fmt.Fprintf(w, "result:          FAILED, first bad record: %s\n", firstBad(rep.FirstBad))
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "problem: %s\n", safetext.Line(p))
	}
}

func firstBad(i int64) string {
	if i < 0 {
		return "none named"
	}
	return strconv.FormatInt(i, 10)
}

func proofCmd(resolve Resolver) *cobra.Command {
	var loc location
	var index uint64
	var asJSON bool
	c := &cobra.Command{
		Use:   "proof --index N",
		Short: "Print the inclusion proof of one record against the latest checkpoint",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("index") {
				return errors.New("--index is required")
			}
			dir, err := loc.dir(resolve)
			if err != nil {
				return err
			}
			p, err := audit.InclusionProof(dir, index)
			if err != nil {
				return err
			}
			if asJSON {
				b, err := p.JSON()
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s\n", b)
				return err
			}
			_, err = fmt.Fprint(cmd.OutOrStdout(), p.String())
			return err
		},
	}
	loc.register(c)
	c.Flags().Uint64Var(&index, "index", 0, "record index")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return c
}

func showCmd(resolve Resolver, now func() time.Time) *cobra.Command {
	var loc location
	var since, until string
	var types []string
	var f audit.Filter
	var asJSON bool
	var nodeLogs map[string]string
	c := &cobra.Command{
		Use:   "show",
		Short: "Print audit events, one per line",
		Long: "Print audit events, one per line, with the fields the vault can decrypt.\n\n" +
			"On a node of a cluster, --node-log NODE=DIR adds a peer's log (its data\n" +
			"directory): the events of every node in time order, each line starting\n" +
			"with node=NAME. A peer's fields decrypt when its vault opens with this\n" +
			"node's key-encryption key.",
		Example: "  tandem audit show -c /etc/tandem/tandem.yaml --since 24h --person alice\n" +
			"  tandem audit show -c node-a.yaml --node-log b=/mnt/node-b/data --since 1h",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			paths, err := loc.paths(resolve)
			if err != nil {
				return err
			}
			dir := filepath.Join(paths.DataDir, "audit")
			keys, err := loc.keys(paths)
			if err != nil {
				// Structure is readable without keys: say so and go on.
				fmt.Fprintf(cmd.ErrOrStderr(), "note: fields not decrypted: %s\n", safetext.Line(err.Error()))
				keys = nil
			}
			t := now()
			if f.Since, err = ParseTime(since, t); err != nil {
				return fmt.Errorf("--since: %w", err)
			}
			if f.Until, err = ParseTime(until, t); err != nil {
				return fmt.Errorf("--until: %w", err)
			}
			for _, s := range types {
				for _, p := range strings.Split(s, ",") {
					if p = strings.TrimSpace(p); p != "" {
						f.Types = append(f.Types, audit.Type(p))
					}
				}
			}
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			srcs, err := showSources(cmd, paths, dir, keys, nodeLogs)
			if err != nil {
				return err
			}
			merged := len(srcs) > 1
			return mergeLogs(srcs, f, func(nr nodeRecord) error {
				r := nr.rec
				if asJSON {
					return enc.Encode(struct {
						Node  string `json:"node,omitempty"`
						Index uint64 `json:"index"`
						audit.Event
						Unreadable []audit.Unreadable `json:"unreadable,omitempty"`
					}{nr.node, r.Index, r.Event, r.Unreadable})
				}
				line := FormatLine(r)
				if merged {
					line = "node=" + nr.node + " " + line
				}
				_, err := fmt.Fprintln(out, line)
				return err
			})
		},
	}
	loc.register(c)
	c.Flags().StringVar(&since, "since", "", "first time: RFC 3339 or a duration ago, such as 24h")
	c.Flags().StringVar(&until, "until", "", "end time (exclusive): RFC 3339 or a duration ago")
	c.Flags().StringSliceVar(&types, "type", nil, "event types (repeat or comma-separate)")
	c.Flags().StringVar(&f.Person, "person", "", "only events naming this person in any role (owner, joiner, requester, approver, locker …; docs/AUDIT.md)")
	c.Flags().StringVar(&f.Session, "session", "", "only this session")
	c.Flags().StringVar(&f.Tenant, "tenant", "", "only this tenant")
	c.Flags().StringVar(&f.Request, "request", "", "only this access request")
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON lines")
	c.Flags().StringToStringVar(&nodeLogs, "node-log", nil, "NODE=DIR: merge a peer's log (its data directory) in time order (repeatable)")
	loc.registerKEK(c)
	return c
}

// showSources is this node's log and each --node-log peer's.
func showSources(cmd *cobra.Command, paths Paths, dir string, keys audit.KeyReader, nodeLogs map[string]string) ([]source, error) {
	self := source{dir: dir, keys: keys}
	if len(nodeLogs) == 0 {
		return []source{self}, nil
	}
	if paths.Cluster == nil {
		return nil, errors.New("--node-log needs --config of a node of a cluster (cluster.node)")
	}
	self.node = paths.Cluster.Node
	srcs := []source{self}
	for _, node := range slices.Sorted(maps.Keys(nodeLogs)) {
		if _, ok := paths.Cluster.Peers[node]; !ok {
			return nil, fmt.Errorf("--node-log %s: not a peer in cluster.peers", node)
		}
		s := source{node: node, dir: filepath.Join(nodeLogs[node], "audit")}
		if paths.Cluster.PeerKeys != nil {
			k, err := paths.Cluster.PeerKeys(nodeLogs[node])
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: fields of node %s not decrypted: %s\n", node, safetext.Line(err.Error()))
			} else {
				s.keys = k
			}
		}
		srcs = append(srcs, s)
	}
	return srcs, nil
}

// ParseTime reads a --since/--until value: empty (no bound), an RFC 3339
// time, or a duration meaning that long before now ("24h", "90m", "24h ago").
func ParseTime(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(strings.TrimSuffix(s, "ago")))
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a duration such as 24h", s)
	}
	return now.Add(-d), nil
}

// FormatLine renders one record for people: index, time, type, person,
// host, session, then the attributes sorted by key.
func FormatLine(r audit.Record) string {
	e := r.Event
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	host := e.Host
	if e.Login != "" {
		host = e.Login + "@" + dash(e.Host)
	}
	var b strings.Builder
	// The fields come from people (an SSH user name "login%host" gives
	// login and host): shown escaped, so no record forges or overwrites a
	// line. Attribute values are quoted, which escapes them too.
	fmt.Fprintf(&b, "%d %s %s person=%s host=%s session=%s", r.Index, e.Time.UTC().Format(time.RFC3339Nano),
		safetext.Line(string(e.Type)), safetext.Line(dash(e.Person)), safetext.Line(dash(host)), safetext.Line(dash(e.Session)))
	if e.Tenant != "" {
		fmt.Fprintf(&b, " tenant=%s", safetext.Line(e.Tenant))
	}
	if e.Request != "" {
		fmt.Fprintf(&b, " request=%s", safetext.Line(e.Request))
	}
	keys := make([]string, 0, len(e.Attrs))
	for k := range e.Attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, " %s=%s", safetext.Line(k), strconv.Quote(e.Attrs[k]))
	}
	// Which fields a missing part held is inside its ciphertext: say which
	// class of which day is missing, and why.
	for _, u := range r.Unreadable {
		fmt.Fprintf(&b, " [%s: %s %s]", u.Reason, u.Class, safetext.Line(u.Day))
	}
	return b.String()
}
