package scopeauthz

import (
	"fmt"
	"testing"
)

// sizedPolicy is a policy of n rules, one service each, like benchPolicy's
// but longer: the match scans rules in order, so its cost grows with n.
func sizedPolicy(tb testing.TB, n int) *policy {
	tb.Helper()
	rules := make([]Rule, 0, n)
	for i := range n {
		svc := fmt.Sprintf("svc%d", i)
		rules = append(rules, Rule{
			Methods: []string{"GET", "HEAD"},
			Paths:   []string{"/api/" + svc, "/api/" + svc + "/*"},
			Require: []string{svc + ":read|admin"},
		})
	}
	p, _, err := compilePolicy(rules, "")
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// BenchmarkPolicyRules measures the policy match as the rule list grows
// (10, 100, 1,000 rules), for a path only the last rule matches: the
// worst case of the linear scan, so operators can size a policy.
func BenchmarkPolicyRules(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			p := sizedPolicy(b, n)
			path := fmt.Sprintf("/api/svc%d/items/42", n-1)
			if r, _ := p.match("GET", path); r != &p.rules[n-1] {
				b.Fatalf("%s is not matched by the last rule", path)
			}
			b.ReportAllocs()
			for b.Loop() {
				if r, _ := p.match("GET", path); r == nil {
					b.Fatal("no match")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/match")
		})
	}
}
