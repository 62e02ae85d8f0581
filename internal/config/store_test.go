package config

import (
	"strings"
	"testing"
)

// TestStore checks the store section: SQLite by default, PostgreSQL only
// with a DSN, a DSN only for PostgreSQL, and that a changed DSN (it may
// hold a password) reaches a config.change only as "changed".
func TestStore(t *testing.T) {
	k := newKeys(t)
	const dsn = "host=db.example.org dbname=tandem user=tandem password=s3cret sslmode=verify-full"
	for _, tc := range []struct {
		name, add string
		driver    string
		msg       string // "" = valid
	}{
		{name: "default", add: "", driver: StoreSQLite},
		{name: "sqlite", add: "store:\n  driver: sqlite\n", driver: StoreSQLite},
		{name: "postgres", add: "store:\n  driver: postgres\n  dsn: " + dsn + "\n", driver: StorePostgres},
		{name: "postgres without dsn", add: "store:\n  driver: postgres\n", msg: "needs store.dsn"},
		{name: "dsn with sqlite", add: "store:\n  dsn: " + dsn + "\n", msg: "store.dsn is for driver postgres"},
		{name: "unknown driver", add: "store:\n  driver: mysql\n", msg: `store.driver must be sqlite or postgres, not "mysql"`},
		{name: "unknown key", add: "store:\n  driver: postgres\n  url: x\n", msg: `unknown key "url"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("/etc/tandem/base.yaml", build(k, nil, tc.add))
			if tc.msg == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Store.Driver != tc.driver {
					t.Errorf("driver %q, want %q", c.Store.Driver, tc.driver)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want a problem containing %q", err, tc.msg)
			}
		})
	}

	a, err := Parse("/etc/tandem/base.yaml", build(k, nil, "store:\n  driver: postgres\n  dsn: "+dsn+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse("/etc/tandem/base.yaml", build(k, nil, "store:\n  driver: postgres\n  dsn: "+strings.Replace(dsn, "s3cret", "0ther", 1)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	changes := Diff(a, b)
	if len(changes) != 1 || changes[0].Entity != "store" {
		t.Fatalf("changes = %+v, want one of the store", changes)
	}
	for _, m := range []map[string]string{changes[0].Old, changes[0].New} {
		for _, v := range m {
			if strings.Contains(v, "s3cret") || strings.Contains(v, "0ther") {
				t.Errorf("the diff shows the DSN: %+v", changes[0])
			}
		}
	}
}
