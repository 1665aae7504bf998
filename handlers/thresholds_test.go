package handlers_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/callstate/callstate/handlers"
)

func TestParseThresholds(t *testing.T) {
	for _, c := range []struct {
		name, in string
		want     handlers.Thresholds
		err      string
	}{
		{"OK", handlers.DefaultThresholds, handlers.Thresholds{
			"waiting": {Warn: 3, Bad: 6}, "longest_wait": {Warn: 60, Bad: 120}, "service_level": {Warn: 0.9, Bad: 0.8}}, ""},
		{"OKSpacesAndSeconds", " longest_wait = 30:2m , abandoned=2:5, to_call_back=1:10", handlers.Thresholds{
			"longest_wait": {Warn: 30, Bad: 120}, "abandoned": {Warn: 2, Bad: 5}, "to_call_back": {Warn: 1, Bad: 10}}, ""},
		{"OKEmpty", "", handlers.Thresholds{}, ""},
		{"ErrUnknownName", "queue=1:2", nil, `"queue=1:2": want name=warn:bad with name one of abandoned, longest_wait, service_level, to_call_back, waiting`},
		{"ErrNoColon", "waiting=3", nil, `waiting="3": want warn:bad`},
		{"ErrNotANumber", "waiting=three:6", nil, `waiting: "three" is not a whole number`},
		{"ErrNegative", "waiting=-1:6", nil, `waiting: "-1" is not a whole number`},
		{"ErrDuration", "longest_wait=soon:2m", nil, `longest_wait: "soon" is not a duration such as 60s or 2m`},
		{"ErrNegativeDuration", "longest_wait=-1s:2m", nil, `longest_wait: "-1s" is not a duration`},
		{"ErrFraction", "service_level=90:80", nil, `service_level: "90" is not a fraction from 0 to 1`},
		{"ErrNaN", "service_level=NaN:0.5", nil, `service_level: "NaN" is not a fraction`},
		{"ErrOrder", "waiting=6:3", nil, "amber (6) must not be above red (3)"},
		{"ErrOrderServiceLevel", "service_level=0.8:0.9", nil, "amber (0.8) must not be below red (0.9), lower is worse"},
		{"ErrTwice", "waiting=1:2,waiting=3:4", nil, "waiting given twice"},
		{"ErrEmptyPart", "waiting=1:2,", nil, `"": want name=warn:bad`},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := handlers.ParseThresholds(c.in)
			if c.err != "" {
				if err == nil || !errors.Is(err, handlers.ErrBadThresholds) || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err %v; want ErrBadThresholds with %q", err, c.err)
				}
				return
			}
			if err != nil || len(got) != len(c.want) {
				t.Fatalf("%v, %v; want %v", got, err, c.want)
			}
			for k, v := range c.want {
				if got[k] != v {
					t.Errorf("%s = %+v; want %+v", k, got[k], v)
				}
			}
		})
	}
}

func FuzzParseThresholds(f *testing.F) {
	for _, s := range []string{handlers.DefaultThresholds, "", "waiting=1:1", "longest_wait=1h:2h", "service_level=1:0", "x=1:2,,", "waiting=3:6,waiting=1:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		th, err := handlers.ParseThresholds(s)
		if err != nil {
			if !errors.Is(err, handlers.ErrBadThresholds) {
				t.Fatalf("error %v does not wrap ErrBadThresholds", err)
			}
			return
		}
		for name, v := range th {
			if v.Warn < 0 || v.Bad < 0 {
				t.Fatalf("%s: negative %+v", name, v)
			}
			if name == "service_level" && (v.Warn < v.Bad || v.Warn > 1) || name != "service_level" && v.Warn > v.Bad {
				t.Fatalf("%s: out of order %+v", name, v)
			}
		}
	})
}
