package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"tandem.dev/tandem/internal/config"
)

// The configurations of the end-to-end tests and of the benchmark are
// built from the config types and written with config.Marshal, so that
// every setup spells a setting the one way Tandem reads it. A setup
// starts from NewConfig and appends its persons, roles and hosts.

// NewConfig returns a configuration with the gateway listening on
// 127.0.0.1:port, its data in dataDir, its audit witness file in a
// directory beside it (serve needs one outside data_dir), and the given
// tenants. Everything else is left to the defaults until the caller sets it.
func NewConfig(port int, dataDir string, tenants ...config.Tenant) *config.Config {
	return &config.Config{
		Gateway: config.Gateway{Listen: fmt.Sprintf("127.0.0.1:%d", port), DataDir: dataDir},
		Audit:   config.Audit{WitnessFile: WitnessFile(dataDir)},
		Tenants: tenants,
	}
}

// WitnessFile is where NewConfig puts the audit witness file of a gateway
// with data in dataDir: outside it, as serve requires.
func WitnessFile(dataDir string) string {
	return filepath.Join(filepath.Dir(dataDir), filepath.Base(dataDir)+"-witness", "checkpoints")
}

// Day is the day offset days from today, in UTC.
func Day(offset int) config.Date {
	y, m, d := time.Now().UTC().AddDate(0, 0, offset).Date()
	return config.Date{Time: time.Date(y, m, d, 0, 0, 0, 0, time.UTC)}
}

// farFuture is a validity that outlasts every test run.
var farFuture = config.Date{Time: time.Date(2099, 12, 31, 0, 0, 0, 0, time.UTC)}

// Person returns a person in the given roles who meets every obligation
// of an employee: one key (pub, an authorized_keys line) added ten days
// ago, confidentiality signed 100 days ago, training valid until 2099.
// The name is "Person ID" and the email ID@example.org.
func Person(id, pub string, roles ...string) config.Person {
	return config.Person{
		ID: id, Name: "Person " + id, Email: id + "@example.org", Roles: roles,
		Keys:        []config.Key{{Key: pub, Added: Day(-10)}},
		Obligations: config.Obligations{ConfidentialitySigned: Day(-100), TrainingValidUntil: farFuture},
	}
}

// External adds to p what an external role requires besides: a contract
// until 2099 and an NDA signed five days ago.
func External(p config.Person) config.Person {
	p.Obligations.ContractUntil, p.Obligations.NDASigned = farFuture, Day(-5)
	return p
}

// WriteConfig writes c to path (mode 0600) in the form Tandem reads.
func WriteConfig(path string, c *config.Config) error {
	b, err := config.Marshal(c)
	if err != nil {
		return fmt.Errorf("marshal configuration: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
