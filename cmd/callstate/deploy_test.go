package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/callstate/callstate/store"
	"github.com/callstate/callstate/store/storetest"
)

// promtool returns promtool's path, failing the test when it is missing:
// make deps installs it (Debian package prometheus).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is needed to check the alert rules; install it with: apt-get install -y prometheus (make deps does)")
	}
	return p
}

// TestAlertRules checks deploy/prometheus's rules and runs their unit tests.
func TestAlertRules(t *testing.T) {
	tool := promtool(t)
	dir := "../../deploy/prometheus"
	for _, args := range [][]string{
		{"check", "rules", "callstate-alerts.yml"},
		{"test", "rules", "callstate-alerts_test.yml"},
	} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// TestGrafanaDashboard runs every SQL query of deploy/grafana's dashboard
// against a migrated database and checks every PromQL expression with
// promtool, so that the dashboard cannot name a column or metric wrongly.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/grafana/callstate.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RawSQL string `json:"rawSql"`
				Expr   string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	url := storetest.NewDatabase(t)
	ctx := context.Background()
	if err := store.Migrate(ctx, url, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	nSQL, nExpr := 0, 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			switch {
			case tg.RawSQL != "":
				nSQL++
				rows, err := conn.Query(ctx, tg.RawSQL)
				if err == nil {
					for rows.Next() {
					}
					err = rows.Err()
					rows.Close()
				}
				if err != nil {
					t.Errorf("panel %q: %v\n%s", p.Title, err, tg.RawSQL)
				}
			case tg.Expr != "":
				nExpr++
				q, _ := json.Marshal(tg.Expr)
				fmt.Fprintf(&rules, "      - record: dashboard:q%d\n        expr: %s\n", nExpr, q)
			}
		}
	}
	if nSQL == 0 || nExpr == 0 {
		t.Fatalf("dashboard has %d SQL and %d PromQL queries", nSQL, nExpr)
	}
	file := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool(t), "check", "rules", file).CombinedOutput(); err != nil {
		t.Errorf("the dashboard's PromQL: %v\n%s", err, out)
	}
}

// TestComposeFile validates compose.yaml against the Compose schema with
// docker-compose (Debian package docker-compose; make deps installs it):
// no container engine is needed for that.
func TestComposeFile(t *testing.T) {
	tool, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatal("docker-compose is needed to check compose.yaml; install it with: apt-get install -y docker-compose (make deps does)")
	}
	cmd := exec.Command(tool, "-f", "compose.yaml", "config", "-q")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}
