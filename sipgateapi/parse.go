package sipgateapi

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/callstate/callstate"
)

type counter struct{ n atomic.Int64 }

func (c *counter) add()        { c.n.Add(1) }
func (c *counter) load() int64 { return c.n.Load() }

// callsJSON is GET /calls' answer.
type callsJSON struct {
	Data []struct {
		CallID string `json:"callId"`
	} `json:"data"`
}

// ParseCalls reads GET /calls' answer: the callIds of the calls
// established now. It returns an error wrapping ErrBadAnswer for anything
// else.
func ParseCalls(body []byte) ([]string, error) {
	var v callsJSON
	if err := json.Unmarshal(body, &v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	if v.Data == nil {
		return nil, fmt.Errorf("%w: no data", ErrBadAnswer)
	}
	ids := make([]string, 0, len(v.Data))
	for _, d := range v.Data {
		if d.CallID != "" {
			ids = append(ids, d.CallID)
		}
	}
	return ids, nil
}

// historyJSON is GET /history's answer; field names are sipgate's.
type historyJSON struct {
	Items      *[]json.RawMessage `json:"items"`
	TotalCount int                `json:"totalCount"`
}

type entryJSON struct {
	ID           string  `json:"id"`
	Type         string  `json:"type"`
	Source       string  `json:"source"`
	Target       string  `json:"target"`
	SourceAlias  string  `json:"sourceAlias"`
	TargetAlias  string  `json:"targetAlias"`
	Created      string  `json:"created"`
	LastModified string  `json:"lastModified"`
	Direction    string  `json:"direction"`
	Status       string  `json:"status"`
	CallID       string  `json:"callId"`
	CallStatus   string  `json:"callStatus"`
	Duration     float64 `json:"duration"`
	Endpoints    []struct {
		Type     string `json:"type"`
		Endpoint struct {
			Extension string `json:"extension"`
			Type      string `json:"type"`
		} `json:"endpoint"`
	} `json:"endpoints"`
}

// maxDuration bounds a call's duration as read: longer is no call.
const maxDuration = 7 * 24 * time.Hour

// ParseHistory reads one page of GET /history's answer. Entries of type
// CALL become calls, VOICEMAIL voicemails; others are counted in Other,
// and the ids of entries that cannot be read (a bad time, a negative
// duration) listed in Unreadable. It
// returns an error wrapping ErrBadAnswer when the page itself is not
// sipgate's shape.
func ParseHistory(body []byte) (HistoryPage, error) {
	var v historyJSON
	if err := json.Unmarshal(body, &v); err != nil {
		return HistoryPage{}, fmt.Errorf("%w: %w", ErrBadAnswer, err)
	}
	if v.Items == nil {
		return HistoryPage{}, fmt.Errorf("%w: no items", ErrBadAnswer)
	}
	if v.TotalCount < 0 {
		return HistoryPage{}, fmt.Errorf("%w: totalCount %d", ErrBadAnswer, v.TotalCount)
	}
	p := HistoryPage{Entries: len(*v.Items), TotalCount: v.TotalCount}
	for _, raw := range *v.Items {
		var e entryJSON
		if err := json.Unmarshal(raw, &e); err != nil {
			var id struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(raw, &id)
			p.Unreadable = append(p.Unreadable, id.ID)
			continue
		}
		created, err1 := parseTime(e.Created)
		modified, err2 := parseTime(e.LastModified)
		if err1 != nil || err2 != nil || e.Duration < 0 || e.Duration > maxDuration.Seconds() {
			p.Unreadable = append(p.Unreadable, e.ID)
			continue
		}
		switch strings.ToUpper(e.Type) {
		case "CALL":
			h := callstate.HistoryCall{ID: e.ID, CallID: e.CallID, Source: e.Source, Target: e.Target,
				SourceAlias: e.SourceAlias, TargetAlias: e.TargetAlias, Direction: e.Direction,
				Status: e.Status, CallStatus: e.CallStatus, Created: created, LastModified: modified,
				Duration: time.Duration(e.Duration * float64(time.Second)).Round(time.Millisecond)}
			for _, ep := range e.Endpoints {
				h.Endpoints = append(h.Endpoints, callstate.HistoryEndpoint{Type: ep.Type, Extension: ep.Endpoint.Extension, Kind: ep.Endpoint.Type})
			}
			p.Calls = append(p.Calls, h)
		case "VOICEMAIL":
			p.Voicemails = append(p.Voicemails, callstate.HistoryVoicemail{ID: e.ID, Source: e.Source, Target: e.Target, Created: created})
		default:
			p.Other++
		}
	}
	return p, nil
}

// parseTime reads sipgate's ISO 8601 times; "" is the zero time.
func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}
