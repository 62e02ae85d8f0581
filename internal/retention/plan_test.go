package retention

import (
	"slices"
	"testing"
	"time"

	"tandem.dev/tandem/internal/vault"
)

var day0 = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// on is a time on day n after day0, late in the day, so that day
// boundaries, not hours, decide.
func on(n int) time.Time { return day0.Add(time.Duration(n)*day + 23*time.Hour + 59*time.Minute) }

// dayN is the vault day string n days after day0.
func dayN(n int) string { return vault.Day(day0.Add(time.Duration(n) * day)) }

func key(class vault.Class, tenant string, n int) vault.KeyInfo {
	return vault.KeyInfo{Class: class, Tenant: tenant, Day: dayN(n), ID: "id-" + dayN(n)}
}

// periods: the defaults, and tenant "long" keeps content 180 days and
// operational 1 day.
func periods(tenant string, c vault.Class) int {
	if tenant == "long" {
		switch c {
		case vault.Content, vault.Sealed:
			return 180
		case vault.Operational:
			return 1
		}
	}
	switch c {
	case vault.Operational:
		return 3
	case vault.Admin, vault.Content, vault.Sealed:
		return 90
	}
	return 0
}

func TestPlan(t *testing.T) {
	ext := func(tenant string, until int) Extension {
		return Extension{ID: "x1", Tenant: tenant, Class: vault.Operational, Until: day0.Add(time.Duration(until) * day)}
	}
	hold := func(tenant string, expires time.Time, days ...int) Hold {
		h := Hold{ID: "h1", Tenant: tenant, Expires: expires, All: len(days) == 0, Days: map[string]bool{}}
		for _, d := range days {
			h.Days[dayN(d)] = true
		}
		return h
	}
	tests := []struct {
		name  string
		now   time.Time
		key   vault.KeyInfo
		exts  []Extension
		holds []Hold
		want  Verdict
		due   string
	}{
		{name: "operational kept through D+3", now: on(3), key: key(vault.Operational, "t1", 0), want: Keep, due: dayN(4)},
		{name: "operational destroyed at D+4", now: day0.Add(4 * day), key: key(vault.Operational, "t1", 0), want: Destroy, due: dayN(4)},
		{name: "operational destroyed a second before D+4: never early", now: day0.Add(4*day - time.Second), key: key(vault.Operational, "t1", 0), want: Keep},
		{name: "operational destroyed later too", now: on(40), key: key(vault.Operational, "t1", 0), want: Destroy},
		{name: "admin kept at D+90", now: on(90), key: key(vault.Admin, "t1", 0), want: Keep, due: dayN(91)},
		{name: "admin destroyed at D+91", now: day0.Add(91 * day), key: key(vault.Admin, "t1", 0), want: Destroy},
		{name: "content kept at D+90", now: on(90), key: key(vault.Content, "t1", 0), want: Keep},
		{name: "content destroyed at D+91", now: on(91), key: key(vault.Content, "t1", 0), want: Destroy},
		{name: "sealed follows content", now: on(91), key: key(vault.Sealed, "t1", 0), want: Destroy},
		{name: "tenant override: content kept at D+91", now: on(91), key: key(vault.Content, "long", 0), want: Keep, due: dayN(181)},
		{name: "tenant override: sealed kept at D+91", now: on(91), key: key(vault.Sealed, "long", 0), want: Keep},
		{name: "tenant override: content destroyed at D+181", now: on(181), key: key(vault.Content, "long", 0), want: Destroy},
		{name: "tenant override: operational destroyed at D+2", now: on(2), key: key(vault.Operational, "long", 0), want: Destroy},
		{name: "other tenant keeps defaults", now: on(2), key: key(vault.Operational, "t1", 0), want: Keep},
		{name: "extension keeps through its end", now: on(8), key: key(vault.Operational, "t1", 0), exts: []Extension{ext("t1", 8)}, want: Keep, due: dayN(9)},
		{name: "extension ended", now: on(9), key: key(vault.Operational, "t1", 0), exts: []Extension{ext("t1", 8)}, want: Destroy},
		{name: "extension capped at D+14", now: on(14), key: key(vault.Operational, "t1", 0), exts: []Extension{ext("t1", 30)}, want: Keep, due: dayN(15)},
		{name: "extension capped: destroyed at D+15", now: day0.Add(15 * day), key: key(vault.Operational, "t1", 0), exts: []Extension{ext("t1", 30)}, want: Destroy},
		{name: "extension shorter than the period changes nothing", now: on(3), key: key(vault.Operational, "t1", 0), exts: []Extension{ext("t1", 1)}, want: Keep, due: dayN(4)},
		{name: "extension of another tenant", now: on(4), key: key(vault.Operational, "t1", 0), exts: []Extension{ext("t2", 8)}, want: Destroy},
		{name: "extension never touches admin", now: on(91), key: key(vault.Admin, "t1", 0), exts: []Extension{{ID: "x", Tenant: "t1", Class: vault.Admin, Until: day0.Add(100 * day)}}, want: Destroy},
		{name: "extension never touches content", now: on(91), key: key(vault.Content, "t1", 0), exts: []Extension{ext("t1", 100)}, want: Destroy},
		{name: "tenant hold keeps", now: on(200), key: key(vault.Content, "t1", 0), holds: []Hold{hold("t1", on(300))}, want: Keep},
		{name: "day hold keeps its day", now: on(4), key: key(vault.Operational, "t1", 0), holds: []Hold{hold("t1", on(300), 0)}, want: Keep},
		{name: "day hold does not keep other days", now: on(5), key: key(vault.Operational, "t1", 1), holds: []Hold{hold("t1", on(300), 0)}, want: Destroy},
		{name: "hold of another tenant", now: on(4), key: key(vault.Operational, "t1", 0), holds: []Hold{hold("t2", on(300))}, want: Destroy},
		{name: "expired hold does not keep", now: on(4), key: key(vault.Operational, "t1", 0), holds: []Hold{hold("t1", on(4).Add(-time.Minute))}, want: Destroy},
		{name: "hold expiring exactly now does not keep", now: on(4), key: key(vault.Operational, "t1", 0), holds: []Hold{hold("t1", on(4))}, want: Destroy},
		{name: "hold does not make a key due early", now: on(1), key: key(vault.Operational, "t1", 0), holds: []Hold{hold("t1", on(300))}, want: Keep, due: dayN(4)},
		{name: "unknown class kept", now: on(400), key: vault.KeyInfo{Class: "weird", Tenant: "t1", Day: dayN(0)}, want: Keep},
		{name: "bad day kept", now: on(400), key: vault.KeyInfo{Class: vault.Admin, Tenant: "t1", Day: "someday"}, want: Keep},
		{name: "interrupted destruction finished", now: on(0), key: vault.KeyInfo{Class: vault.Admin, Tenant: "t1", Day: dayN(0), Shredded: true, Pending: true}, want: Finish},
		{name: "future key kept", now: on(0), key: key(vault.Operational, "t1", 5), want: Keep, due: dayN(9)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			as := Plan(tc.now, []vault.KeyInfo{tc.key}, periods, tc.exts, tc.holds)
			if len(as) != 1 {
				t.Fatalf("got %d actions", len(as))
			}
			a := as[0]
			if a.Verdict != tc.want || a.Reason == "" {
				t.Fatalf("verdict %s (%s), want %s", a.Verdict, a.Reason, tc.want)
			}
			if tc.due != "" && vault.Day(a.Due) != tc.due {
				t.Fatalf("due %s, want %s (%s)", vault.Day(a.Due), tc.due, a.Reason)
			}
		})
	}
}

func TestPlanSkipsDestroyedAndNamesHolds(t *testing.T) {
	keys := []vault.KeyInfo{
		{Class: vault.Admin, Tenant: "t1", Day: dayN(0), Shredded: true},
		key(vault.Operational, "t1", 0),
	}
	holds := []Hold{{ID: "a", Tenant: "t1", All: true, Expires: on(50)}, {ID: "b", Tenant: "t1", Days: map[string]bool{dayN(0): true}, Expires: on(50)}}
	as := Plan(on(10), keys, periods, nil, holds)
	if len(as) != 1 || as[0].Verdict != Keep || !slices.Equal(as[0].HeldBy, []string{"a", "b"}) {
		t.Fatalf("got %+v", as)
	}
}
