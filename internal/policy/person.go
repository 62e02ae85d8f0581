package policy

import (
	"crypto/rsa"
	"fmt"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/config"
)

// Obligation names as written in Role.Requires.
const (
	obConfidentiality = "confidentiality"
	obTraining        = "training"
	obContract        = "contract"
	obNDA             = "nda"
)

// obligationOrder fixes the order in which missing obligations are reported,
// so that the same state always produces the same text.
var obligationOrder = []string{obConfidentiality, obTraining, obContract, obNDA}

// CheckPerson decides whether a person may use the gateway at all with this
// key, at login. It checks, in this order: the lock, the obligations every
// role of the person requires, and (when k is not nil) the key's age and
// strength. A key close to expiry yields Allow with a warning.
func (e *Engine) CheckPerson(p *config.Person, k *config.Key, now time.Time, lock string) Decision {
	if p == nil {
		return deny("unknown person", "ask your administrator to register you", nil)
	}
	if lock != "" {
		return deny("your account is locked: "+oneLine(lock), "ask an administrator to unlock your account", nil)
	}
	if problems := e.obligationProblems(p, now); len(problems) > 0 {
		return deny(strings.Join(problems, "; "),
			"ask your administrator to record the missing or renewed documents", nil)
	}
	if k == nil {
		return Decision{Verdict: Allow}
	}
	if d := checkKeyStrength(k, e.cfg.Gateway.CryptoProfile); d.Verdict == Deny {
		return d
	}
	return e.checkKeyAge(k, now)
}

// requiredObligations is the union of what the person's roles require. A
// person without any resolvable role still needs the baseline, because
// without obligations a person may log in to nothing.
func (e *Engine) requiredObligations(p *config.Person) map[string]bool {
	req := make(map[string]bool, len(obligationOrder))
	roles := e.rolesOf(p)
	if len(roles) == 0 {
		req[obConfidentiality] = true
		req[obTraining] = true
		return req
	}
	for _, r := range roles {
		for _, o := range roleRequires(r) {
			req[o] = true
		}
	}
	return req
}

// roleRequires applies the same default as the config package: an empty
// Requires means confidentiality and training, plus contract and NDA for
// external roles.
func roleRequires(r *config.Role) []string {
	if len(r.Requires) > 0 {
		return r.Requires
	}
	if r.External {
		return []string{obConfidentiality, obTraining, obContract, obNDA}
	}
	return []string{obConfidentiality, obTraining}
}

// obligationProblems lists every unmet obligation, one phrase each. An
// obligation name the engine does not know is itself a problem: it fails
// closed instead of silently ignoring a requirement.
func (e *Engine) obligationProblems(p *config.Person, now time.Time) []string {
	req := e.requiredObligations(p)
	today := day(now)
	ob := p.Obligations
	var problems []string
	for _, name := range obligationOrder {
		if !req[name] {
			continue
		}
		switch name {
		case obConfidentiality:
			problems = appendSigned(problems, ob.ConfidentialitySigned, today,
				"no signed confidentiality commitment on record", "confidentiality commitment")
		case obTraining:
			problems = appendValidUntil(problems, ob.TrainingValidUntil, today,
				"no data-protection training on record", "data-protection training expired on ")
		case obContract:
			problems = appendValidUntil(problems, ob.ContractUntil, today,
				"no contract on record", "contract ended on ")
		case obNDA:
			problems = appendSigned(problems, ob.NDASigned, today,
				"no signed NDA on record", "NDA")
		}
		delete(req, name)
	}
	// Whatever is left over is a name this engine does not understand.
	unknown := make([]string, 0, len(req))
	for name := range req {
		unknown = append(unknown, name)
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		problems = append(problems, fmt.Sprintf("a role requires the unknown obligation %q", name))
	}
	return problems
}

// appendSigned checks a commitment that must be signed on or before today.
func appendSigned(problems []string, d config.Date, today time.Time, missing, what string) []string {
	if d.IsZero() {
		return append(problems, missing)
	}
	if day(d.Time).After(today) {
		return append(problems, fmt.Sprintf("%s is dated %s, which is after today", what, formatDay(d.Time)))
	}
	return problems
}

// appendValidUntil checks a validity that includes its last day.
func appendValidUntil(problems []string, d config.Date, today time.Time, missing, expiredPrefix string) []string {
	if d.IsZero() {
		return append(problems, missing)
	}
	if day(d.Time).Before(today) {
		return append(problems, expiredPrefix+formatDay(d.Time))
	}
	return problems
}

// checkKeyStrength refuses keys too weak for the BSI reading in
// docs/STANDARDS.md: RSA below 3072 bits; under the strict crypto profile also
// Ed25519, which the BSI lists do not name. DSA keys never get here:
// x/crypto/ssh no longer parses them, and the configuration refuses them
// (config.parseKey).
func checkKeyStrength(k *config.Key, profile string) Decision {
	pub, err := publicKey(k)
	if err != nil {
		return deny("your key could not be read: "+err.Error(), "register a new key with your administrator", nil)
	}
	if cert, ok := pub.(*ssh.Certificate); ok {
		pub = cert.Key
	}
	fp := fingerprint(k, pub)
	switch pub.Type() {
	case ssh.KeyAlgoRSA:
		cpk, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return deny("your RSA key "+fp+" could not be inspected", "register a new key with your administrator", nil)
		}
		rk, ok := cpk.CryptoPublicKey().(*rsa.PublicKey)
		if !ok || rk.N == nil {
			return deny("your RSA key "+fp+" could not be inspected", "register a new key with your administrator", nil)
		}
		if bits := rk.N.BitLen(); bits < minRSABits {
			return deny(fmt.Sprintf("key %s is RSA with %d bits; at least %d bits are required", fp, bits, minRSABits),
				"register an ECDSA key or an RSA key of at least 3072 bits with your administrator", nil)
		}
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519:
		if profile == "strict" {
			return deny("key "+fp+" is Ed25519, which the strict crypto profile does not accept",
				"register an ECDSA key (or a FIDO2 sk-ecdsa key) with your administrator", nil)
		}
	}
	return Decision{Verdict: Allow}
}

// checkKeyAge denies an expired key and warns about one that expires soon.
func (e *Engine) checkKeyAge(k *config.Key, now time.Time) Decision {
	fp := fingerprint(k, nil)
	if k.Added.IsZero() {
		return deny("key "+fp+" has no registration date on record", "ask your administrator to record when the key was added", nil)
	}
	exp := e.KeyExpiry(k)
	if !now.Before(exp) {
		return deny(fmt.Sprintf("key %s expired on %s (registered %s, maximum age %s)",
			fp, formatInstant(exp), formatDay(k.Added.Time), formatAge(e.keyMaxAge())),
			"register a new key with your administrator", nil)
	}
	if !now.Before(exp.Add(-e.keyWarn())) {
		return Decision{Verdict: Allow, Warnings: []string{fmt.Sprintf(
			"your key %s expires on %s; register a new key with your administrator before then",
			fp, formatInstant(exp))}}
	}
	return Decision{Verdict: Allow}
}

// KeyExpiry returns when the key expires under policy: Added + KeyMaxAge
// (180 days when the policy leaves it unset). The key is expired from that
// instant on.
func (e *Engine) KeyExpiry(k *config.Key) time.Time {
	if k == nil {
		return time.Time{}
	}
	return k.Added.Time.Add(e.keyMaxAge())
}

// publicKey returns the parsed key, parsing the authorized_keys text when
// the caller did not (parsing is pure; it only reads the string).
func publicKey(k *config.Key) (ssh.PublicKey, error) {
	if k.PublicKey != nil {
		return k.PublicKey, nil
	}
	if strings.TrimSpace(k.Key) == "" {
		return nil, fmt.Errorf("no key on record")
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.Key))
	if err != nil {
		return nil, fmt.Errorf("not in authorized_keys format")
	}
	return pub, nil
}

// fingerprint names a key in messages: the stored fingerprint, else one
// computed from pub, else a neutral word.
func fingerprint(k *config.Key, pub ssh.PublicKey) string {
	if k.Fingerprint != "" {
		return k.Fingerprint
	}
	if pub == nil {
		if p, err := publicKey(k); err == nil {
			pub = p
		}
	}
	if pub != nil {
		return ssh.FingerprintSHA256(pub)
	}
	return "(unreadable key)"
}
