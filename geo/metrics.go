package geo

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	updates *prometheus.CounterVec
	refused *prometheus.CounterVec
	problem *prometheus.Desc
	noCopy  *prometheus.Desc
	age     *prometheus.Desc
	entries *prometheus.Desc
	dbUp    *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipsentry_geo_list_updates_total",
			Help: "Country list update attempts by list and result (updated, unchanged, not-modified, rejected, failed). Rejected and failed keep the last good list.",
		}, []string{"list", "result"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipsentry_geo_list_refused_total",
			Help: "Country lists (downloaded or local) refused by a check, by list and check (size, html, family, parse, floor, shrink, churn). A refused list keeps the last good one in use.",
		}, []string{"list", "check"}),
		problem: prometheus.NewDesc("sipsentry_geo_list_degraded",
			"1 while an allowed country's list source is refused or unreadable and the last good copy (or nothing) is in use, else 0.",
			[]string{"list"}, nil),
		noCopy: prometheus.NewDesc("sipsentry_geo_list_unenforceable",
			"1 while an allowed country's list has no good copy at all, so its addresses cannot be allowed by country, else 0.",
			[]string{"list"}, nil),
		age: prometheus.NewDesc("sipsentry_geo_list_age_seconds",
			"Seconds since the list in use was last confirmed current (downloaded, answered 304, or the lists_dir file's modification time).",
			[]string{"list"}, nil),
		entries: prometheus.NewDesc("sipsentry_geo_list_entries",
			"Normalised prefixes in the list in use.", []string{"list"}, nil),
		dbUp: prometheus.NewDesc("sipsentry_geo_mmdb_loaded",
			"1 when the configured MaxMind DB is loaded, 0 when it is missing (lookups answer \"?\").",
			[]string{"setting"}, nil),
	}
}

// Describe implements prometheus.Collector: register a *Geo to export its
// list and database metrics.
func (g *Geo) Describe(ch chan<- *prometheus.Desc) {
	g.met.updates.Describe(ch)
	g.met.refused.Describe(ch)
	ch <- g.met.problem
	ch <- g.met.noCopy
	ch <- g.met.age
	ch <- g.met.entries
	ch <- g.met.dbUp
}

// Collect implements prometheus.Collector.
func (g *Geo) Collect(ch chan<- prometheus.Metric) {
	g.met.updates.Collect(ch)
	g.met.refused.Collect(ch)
	problems := map[string]ListProblem{}
	for _, p := range g.Health() {
		problems[p.List] = p
	}
	for _, cc := range g.allow {
		for _, v6 := range []bool{false, true} {
			name := listKey{cc, v6}.String()
			p, bad := problems[name]
			ch <- prometheus.MustNewConstMetric(g.met.problem, prometheus.GaugeValue, b2f(bad), name)
			ch <- prometheus.MustNewConstMetric(g.met.noCopy, prometheus.GaugeValue, b2f(p.NoGoodCopy), name)
		}
	}
	now := g.now()
	for k, l := range g.snap.Load().lists {
		if !l.meta.Verified.IsZero() {
			ch <- prometheus.MustNewConstMetric(g.met.age, prometheus.GaugeValue, now.Sub(l.meta.Verified).Seconds(), k.String())
		}
		ch <- prometheus.MustNewConstMetric(g.met.entries, prometheus.GaugeValue, float64(l.n), k.String())
	}
	for _, d := range []*dbFile{g.country, g.asn} {
		if d == nil || d.path == "" {
			continue
		}
		v := 0.0
		if d.handle() != nil {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(g.met.dbUp, prometheus.GaugeValue, v, d.setting)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
