package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/firewall"
	"github.com/sipsentry/sipsentry/internal/config"
	"github.com/sipsentry/sipsentry/internal/doctor"
)

// The checks themselves are tested in internal/doctor; these tests cover
// the command's part: the exit rule (error only when a check fails), the
// table and the --json shape.

// wiringEnv is a doctor.Env that touches nothing outside t.TempDir(): no
// tool is found, nothing is executed, the kernel is never asked.
func wiringEnv(t *testing.T, configText string) doctor.Env {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipsentry.toml")
	writeFile(t, cfg, configText, 0o600)
	return doctor.Env{
		ConfigPath:    cfg,
		ConfigGiven:   true,
		ProcModules:   filepath.Join(dir, "proc-modules"),
		SysModule:     filepath.Join(dir, "sys-module"),
		ProcStatus:    filepath.Join(dir, "proc-status"),
		KernelConfigs: []string{filepath.Join(dir, "config")},
		Run: func(_ context.Context, name string, args ...string) (string, error) {
			return "", fmt.Errorf("unexpected exec %s %v", name, args)
		},
		LookPath: func(string) (string, error) { return "", exec.ErrNotFound },
		Now:      time.Now,
		HTTP:     &http.Client{Timeout: 5 * time.Second},
		AMIWait:  100 * time.Millisecond,
		FirewallStatus: func(context.Context, config.Firewall) (firewall.Status, error) {
			return firewall.Status{}, errors.New("not asked in this test")
		},
	}
}

// TestRunDoctorFails runs the real checks on a config whose AMI secret file
// is missing: the table says FAIL with its fix, --json says ok=false, and
// both return errChecksFailed (exit 1).
func TestRunDoctorFails(t *testing.T) {
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	text := fmt.Sprintf("state_dir = %q\n[ami]\naddress = %q\nsecret_file = %q\n[firewall]\nbackend = \"dry-run\"\n",
		t.TempDir(), addr, filepath.Join(t.TempDir(), "missing.secret"))

	var out bytes.Buffer
	err = runDoctor(context.Background(), &doctorOptions{}, wiringEnv(t, text), &out)
	if !errors.Is(err, errChecksFailed) {
		t.Fatalf("runDoctor = %v, want errChecksFailed", err)
	}
	table := out.String()
	if !strings.Contains(table, "FAIL  ami.secret_file") || !strings.Contains(table, "fix: create ") || !strings.Contains(table, " fail, ") {
		t.Errorf("table lacks the failure and its fix:\n%s", table)
	}

	out.Reset()
	err = runDoctor(context.Background(), &doctorOptions{json: true}, wiringEnv(t, text), &out)
	if !errors.Is(err, errChecksFailed) {
		t.Fatalf("runDoctor --json = %v, want errChecksFailed", err)
	}
	rep := decodeDoctorJSON(t, out.Bytes())
	if rep.OK {
		t.Error("ok = true with a failing check")
	}
	if len(rep.Checks) < 15 {
		t.Errorf("%d checks in the JSON", len(rep.Checks))
	}
}

type doctorJSON struct {
	OK     bool `json:"ok"`
	Checks []struct {
		Check, Status, Detail, Fix string
	} `json:"checks"`
}

func decodeDoctorJSON(t *testing.T, b []byte) doctorJSON {
	t.Helper()
	var rep doctorJSON
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("doctor --json is not JSON: %v\n%s", err, b)
	}
	return rep
}

// TestPrintDoctor checks the exit rule and the JSON shape on given results:
// warnings and skips do not fail; one fail does.
func TestPrintDoctor(t *testing.T) {
	results := []doctor.Result{
		{Name: "config file", Status: doctor.Pass, Detail: "parsed"},
		{Name: "geo.mmdb", Status: doctor.Warn, Detail: "not set", Fix: "download one"},
		{Name: "module xt_set", Status: doctor.Skip, Detail: "dry-run"},
	}
	var out bytes.Buffer
	if err := printDoctor(&out, &doctorOptions{json: true}, results); err != nil {
		t.Fatalf("warnings only: %v", err)
	}
	rep := decodeDoctorJSON(t, out.Bytes())
	if !rep.OK || len(rep.Checks) != 3 {
		t.Fatalf("ok=%v with %d checks", rep.OK, len(rep.Checks))
	}
	c := rep.Checks[1]
	if c.Check != "geo.mmdb" || c.Status != "warn" || c.Detail != "not set" || c.Fix != "download one" {
		t.Errorf("JSON check = %+v", c)
	}
	if !strings.Contains(out.String(), `"check": "config file"`) || strings.Contains(out.String(), `"fix": ""`) {
		t.Errorf("JSON keys or omitempty fix wrong:\n%s", out.String())
	}

	out.Reset()
	if err := printDoctor(&out, &doctorOptions{}, results); err != nil {
		t.Fatalf("table, warnings only: %v", err)
	}
	if !strings.Contains(out.String(), "1 pass, 1 warn, 0 fail, 1 skip") || !strings.Contains(out.String(), "fix: download one") {
		t.Errorf("table:\n%s", out.String())
	}

	results = append(results, doctor.Result{Name: "ami login", Status: doctor.Fail, Detail: "refused", Fix: "add the user"})
	out.Reset()
	if err := printDoctor(&out, &doctorOptions{json: true}, results); !errors.Is(err, errChecksFailed) {
		t.Fatalf("with a fail: %v, want errChecksFailed", err)
	}
	if decodeDoctorJSON(t, out.Bytes()).OK {
		t.Error("ok = true with a failing check")
	}
}
