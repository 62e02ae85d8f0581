package config

import (
	"strings"
	"testing"
	"time"
)

// TestRetentionBounds checks that every legal bound is enforced with its
// line and a reason.
func TestRetentionBounds(t *testing.T) {
	k := newKeys(t)
	tests := []struct {
		name, add string
		edits     map[int]string
		line      int
		msg       string
	}{
		{name: "admin below 90d", add: "retention:\n  admin: 30d\n", line: 22, msg: "retention admin 30d is outside 90d..1095d: the admin record is kept revision-proof"},
		{name: "admin above 3 years", add: "retention:\n  admin: 1200d\n", line: 22, msg: "outside 90d..1095d"},
		{name: "content below 90d", add: "retention:\n  content: 89d\n", line: 22, msg: "recordings are kept at least 90 days (M9)"},
		{name: "operational above 3d", add: "retention:\n  operational: 4d\n", line: 22, msg: "keep it longer only with `tandem retention extend`"},
		{name: "operational zero", add: "retention:\n  operational: 0d\n", line: 22, msg: "retention operational must be longer than 0"},
		{name: "not whole days", add: "retention:\n  operational: 36h\n", line: 22, msg: "must be whole days"},
		{name: "sealed longer than content", add: "retention:\n  sealed: 100d\n", line: 22, msg: "sealed 100d must not be longer than content 90d"},
		{name: "tenant override out of bounds", edits: map[int]string{2: "  - {id: t1, name: T1, retention: {operational: 5d}}"}, line: 2, msg: "retention operational 5d is outside 1d..3d"},
		{name: "tenant sealed above tenant content", edits: map[int]string{2: "  - {id: t1, retention: {content: 120d, sealed: 121d}}"}, line: 2, msg: "sealed 121d must not be longer than content 120d"},
		{name: "hold max too long", add: "retention:\n  hold_max: 2000d\n", line: 22, msg: "hold_max 2000d must be whole days, at most 1095d"},
		{name: "dpo without a way", add: "retention:\n  dpo: {to: dpo@example.org}\n", line: 22, msg: "set smtp or command"},
		{name: "dpo both ways", add: "retention:\n  dpo: {to: dpo@example.org, from: gw@example.org, smtp: {addr: 'mail:587'}, command: [/bin/true]}\n", line: 22, msg: "not both"},
		{name: "dpo starttls optional", add: "retention:\n  dpo:\n    to: dpo@example.org\n    from: gw@example.org\n    smtp: {addr: 'mail:587', starttls: optional}\n", line: 25, msg: `only "required" exists`},
		{name: "dpo relative command", add: "retention:\n  dpo: {to: dpo@example.org, command: [sendmail, -t]}\n", line: 22, msg: "absolute program path"},
		{name: "dpo user without password file", add: "retention:\n  dpo:\n    to: dpo@example.org\n    from: gw@example.org\n    smtp: {addr: 'mail:587', username: gw}\n", line: 25, msg: "username and password_file together"},
		{name: "dpo bad to", add: "retention:\n  dpo: {to: dpo, command: [/bin/true]}\n", line: 22, msg: "retention.dpo.to"},
		{name: "external role with hold", edits: map[int]string{11: "  - id: admin\n    external: true\n    permissions: [hold]"}, line: 13, msg: "may not have the permission hold"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", build(k, tc.edits, tc.add))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, p := range problems(t, err) {
				if p.Line == tc.line && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Fatalf("want line %d %q, got %v", tc.line, tc.msg, err)
		})
	}
}

func TestRetentionPeriods(t *testing.T) {
	k := newKeys(t)
	add := "retention:\n  content: 120d\n  dpo:\n    to: dpo@example.org\n    from: gw@example.org\n    smtp: {addr: 'mail.example.org:587'}\n"
	c, err := Parse("t.yaml", build(k, map[int]string{2: "  - {id: t1, retention: {operational: 1d, content: 180d}}"}, add))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tenant, class string
		want          time.Duration
	}{
		{"t1", "admin", 90 * Day}, {"t1", "operational", Day}, {"t1", "content", 180 * Day}, {"t1", "sealed", 180 * Day},
		{"_gateway", "admin", 90 * Day}, {"_gateway", "operational", 3 * Day}, {"_gateway", "content", 120 * Day},
		{"_gateway", "sealed", 120 * Day}, {"t1", "nonsense", 0},
	} {
		if got := c.Period(tc.tenant, tc.class); got != tc.want {
			t.Errorf("Period(%s, %s) = %s, want %s", tc.tenant, tc.class, got, tc.want)
		}
	}
	if c.Retention.HoldMax.Duration != DefaultHoldMax || c.Retention.DPO.SMTP.StartTLS != StartTLSRequired || c.Retention.DPO.Timeout.Duration != DefaultDPOTimeout {
		t.Errorf("defaults not filled: %+v", c.Retention)
	}
}

func TestValidateExtension(t *testing.T) {
	today := time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		class string
		until time.Time
		ok    bool
	}{
		{"operational", today, true},
		{"operational", today.Add(14 * Day), true},
		{"operational", today.Add(15 * Day), false},
		{"operational", today.Add(-Day), false},
		{"admin", today.Add(Day), false},
		{"content", today.Add(Day), false},
	} {
		if err := ValidateExtension(tc.class, tc.until, today); (err == nil) != tc.ok {
			t.Errorf("%s until %s: err %v", tc.class, tc.until.Format(dateLayout), err)
		}
	}
}
