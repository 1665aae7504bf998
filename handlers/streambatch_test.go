package handlers

import (
	"strings"
	"testing"
)

// TestBatchUnsent: what of a batch a client writes, by where its start
// left it and by its filter.
func TestBatchUnsent(t *testing.T) {
	batch := &streamBatch{}
	ev := func(id int64, obj, typed string) streamEvent {
		e := streamEvent{id: id, from: len(batch.rendered)}
		for i, typ := range []string{obj, typed} {
			if typ != "" {
				from := len(batch.rendered)
				batch.rendered = append(batch.rendered, typ+"/"...)
				e.parts[i] = streamPart{typ, from, len(batch.rendered)}
			}
		}
		e.to = len(batch.rendered)
		return e
	}
	batch.events = []streamEvent{ev(5, EventCall, EventCallRinging), ev(6, EventLamp, EventLampChanged), ev(7, EventCall, "")}
	all, _ := parseEventFilter("")
	board, _ := parseEventFilter("call,lamp")
	missed, _ := parseEventFilter("call.missed")
	batch.joined = map[string][]byte{}
	for _, f := range []eventFilter{all, board, missed} {
		batch.joined[f.key()] = f.join(nil, batch.rendered, batch.events)
	}
	// The clients that take every event write the batch as rendered: it
	// is kept once, however many of them have it queued.
	if j := batch.joined[all.key()]; len(j) == 0 || &j[0] != &batch.rendered[0] {
		t.Errorf("every event joined into a copy of the batch, want the batch's own buffer")
	}
	if j := batch.joined[all.key()]; cap(j) != len(j) {
		t.Errorf("every event joined with room to append (cap %d, len %d): an append would write into the batch", cap(j), len(j))
	}
	tests := []struct {
		name   string
		want   eventFilter
		from   int64
		writes string // the slices written, joined by |
		to     int64
	}{
		{"AllAfterStart", all, 4, "call/call.ringing/lamp/lamp.changed/call/", 7},
		{"BoardAfterStart", board, 0, "call/lamp/call/", 7},
		{"NothingOfItsTypes", missed, 4, "", 7},
		{"StartInside", all, 5, "lamp/lamp.changed/call/", 7},
		{"BoardStartInside", board, 6, "call/", 7},
		{"AllSent", all, 7, "", 7},
		{"StartAhead", all, 9, "", 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bs, to := batch.unsent(nil, tt.want.key(), tt.want, tt.from)
			var got []string
			for _, b := range bs {
				got = append(got, string(b))
			}
			if strings.Join(got, "|") != tt.writes || to != tt.to {
				t.Errorf("from %d: wrote %q up to %d, want %q up to %d", tt.from, strings.Join(got, "|"), to, tt.writes, tt.to)
			}
		})
	}
	// Sent counts the events each client's filter takes something of.
	ringing, _ := parseEventFilter("call.ringing")
	for _, c := range []struct {
		f    eventFilter
		want int64
	}{{all, 3}, {board, 3}, {missed, 0}, {ringing, 1}} {
		if n := c.f.count(batch.events); n != c.want {
			t.Errorf("filter %q counts %d events, want %d", c.f.key(), n, c.want)
		}
	}
	if k := board.key(); k != "call,lamp" {
		t.Errorf("key %q", k)
	}
	if r, _ := parseEventFilter("lamp, call"); r.key() != board.key() {
		t.Errorf("the same types in another order: key %q", r.key())
	}
}
