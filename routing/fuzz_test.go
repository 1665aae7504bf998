package routing_test

import (
	"os"
	"testing"
	"time"

	"github.com/callstate/callstate/routing"
	"github.com/callstate/callstate/xmlresponse"
)

// FuzzParse: any bytes give rules or an error, never a panic; rules that
// parse give valid sipgate answers for every action they hold, and can be
// evaluated.
func FuzzParse(f *testing.F) {
	issue, _ := os.ReadFile("testdata/issue.yaml")
	f.Add(issue)
	f.Add([]byte(full))
	f.Add([]byte("rules:\n  - name: a\n    then: { hangup: true }\n"))
	f.Add([]byte("rules: [{name: x, when: {inside: 'Sat,Sun 22:00-02:00'}, then: {reject: busy}}]\ntime_zone: UTC\n"))
	f.Add([]byte("a: &x [1]\nrules: *x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			r   *routing.Rules
			err error
		)
		done := make(chan struct{})
		go func() {
			defer close(done)
			r, err = routing.Parse(data, plan)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("Parse did not return within 5 s of %q", data)
		}
		if err != nil {
			if r != nil {
				t.Fatal("rules and an error")
			}
			if err.Error() == "" {
				t.Fatal("an error without words")
			}
			return
		}
		check := func(rules []routing.Rule) {
			for _, x := range rules {
				a := x.Then.Response("https://cs.example.com/webhooks/sipgate?menu=m&sig=s")
				if a == nil {
					t.Fatalf("rule %q has no action", x.Name)
				}
				if err := (xmlresponse.Response{Action: a}).Validate(); err != nil {
					t.Fatalf("rule %q: invalid answer: %v", x.Name, err)
				}
				if x.Name == "" {
					t.Fatal("a rule without a name")
				}
			}
		}
		check(r.Rules)
		for _, m := range r.Menus {
			check(m)
		}
		r.Evaluate(routing.Call{Direction: "in", From: "491776249000", To: "4928559389086", At: time.Unix(1e9, 0)}, routing.Env{})
	})
}
