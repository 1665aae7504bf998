package testpbx

import (
	"encoding/xml"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var capture = flag.Bool("capture", false, "save the NOTIFYs received in TestKamailioDialogNotify to testdata/captures")

// captureDir holds real NOTIFYs from Kamailio for the dialog-info parser's
// tests, written by `go test ./internal/testpbx -run TestKamailioDialogNotify
// -capture`: kamailio-5.6-<case>-<ext>-<n>-<state>.xml is the body exactly as
// received, the .sip file of the same name the whole request (start line,
// headers, body). Ports, tags and Call-IDs differ from run to run.
const captureDir = "testdata/captures"

func TestKamailioDialogNotify(t *testing.T) {
	tests := []struct {
		name  string
		place func(t *testing.T, k *Kamailio)
		want  []string // dialog states, in order, for both extensions
	}{
		{
			name: "Answered",
			place: func(t *testing.T, k *Kamailio) {
				k.PlaceCall(t, "100", "101", 500*time.Millisecond, 500*time.Millisecond)
			},
			want: []string{"early", "confirmed", "terminated"},
		},
		{
			name:  "Cancelled",
			place: func(t *testing.T, k *Kamailio) { k.PlaceUnansweredCall(t, "100", "101", 500*time.Millisecond) },
			want:  []string{"early", "terminated"},
		},
		{
			name:  "Rejected",
			place: func(t *testing.T, k *Kamailio) { k.PlaceRejectedCall(t, "100", "101", 500*time.Millisecond) },
			want:  []string{"early", "terminated"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			k := StartKamailio(t)
			t.Logf("kamailio ready on %s after %v", k.Addr(), time.Since(start).Round(time.Millisecond))

			w := newWatcher(t)
			for _, ext := range []string{"101", "100"} {
				w.subscribe(k, ext)
			}

			start = time.Now()
			tt.place(t, k)
			t.Logf("call placed in %v", time.Since(start).Round(time.Millisecond))

			for _, ext := range []string{"101", "100"} {
				ns := w.waitStates(ext, tt.want, 5*time.Second)
				for _, n := range ns {
					if n.err != nil {
						t.Errorf("extension %s: NOTIFY body does not parse: %v\n%s", ext, n.err, n.req.Body())
						continue
					}
					if got := header(n.req, "Event"); got != "dialog" {
						t.Errorf("extension %s: NOTIFY Event = %q, want dialog", ext, got)
					}
					if n.info == nil {
						continue
					}
					if got := header(n.req, "Content-Type"); got != "application/dialog-info+xml" {
						t.Errorf("extension %s: NOTIFY Content-Type = %q", ext, got)
					}
					if n.info.Entity != k.URI(ext) {
						t.Errorf("extension %s: entity = %q, want %q", ext, n.info.Entity, k.URI(ext))
					}
				}
			}
			if *capture {
				saveCaptures(t, tt.name, w)
			}
		})
	}
}

// saveCaptures writes the NOTIFYs of both subscriptions to captureDir,
// replacing earlier captures of the same case.
func saveCaptures(t *testing.T, name string, w *watcher) {
	t.Helper()
	if err := os.MkdirAll(captureDir, 0o755); err != nil {
		t.Fatal(err)
	}
	prefix := "kamailio-5.6-" + strings.ToLower(name)
	old, _ := filepath.Glob(filepath.Join(captureDir, prefix+"-*"))
	for _, f := range old {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
	for _, ext := range []string{"101", "100"} {
		for i, raw := range w.conn.rawNotifies(ext) {
			_, body := splitMessage(raw)
			state := "empty" // initial NOTIFY before anything was published
			var di dialogInfo
			if len(body) > 0 && xml.Unmarshal(body, &di) == nil {
				state = "nodialog"
				if len(di.Dialogs) > 0 {
					state = strings.ToLower(di.Dialogs[0].State) // 5.6 sends "Trying" for the caller
				}
			}
			base := filepath.Join(captureDir, fmt.Sprintf("%s-%s-%02d-%s", prefix, ext, i, state))
			if err := os.WriteFile(base+".sip", raw, 0o644); err != nil {
				t.Fatal(err)
			}
			if len(body) > 0 {
				if err := os.WriteFile(base+".xml", body, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
}
