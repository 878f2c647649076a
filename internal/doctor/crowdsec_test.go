package doctor

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/sipsentry/sipsentry/crowdsec/lapitest"
)

// TestDoctorCrowdsecAgainstRealLAPI runs the [crowdsec] checks against
// Debian's crowdsec LAPI: good credentials pass, a wrong password and a
// wrong key fail with the cscli command that fixes them, a stopped LAPI
// fails as unreachable.
func TestDoctorCrowdsecAgainstRealLAPI(t *testing.T) {
	l := lapitest.Start(t)
	machine := l.AddMachine("doctor-m")
	key := l.AddBouncer("doctor-b")
	cfg := func(machine, key string) string {
		return fmt.Sprintf("[crowdsec]\nenabled = true\nurl = %q\nmachine_credentials_file = %q\nbouncer_key_file = %q\n", l.URL, machine, key)
	}

	env, _, _ := testDoctorEnv(t, cfg(machine, key), 0o600)
	rs := newDoctor(env).checkCrowdsec(context.Background())
	if len(rs) != 3 {
		t.Fatalf("results %+v, want LAPI, machine, bouncer", rs)
	}
	wantResult(t, rs[0], Pass, "clock skew", "")
	wantResult(t, rs[1], Pass, "logged in", "")
	wantResult(t, rs[2], Pass, "API key accepted", "")

	dir := t.TempDir()
	badMachine := filepath.Join(dir, "m.yaml")
	badKey := filepath.Join(dir, "b.key")
	os.WriteFile(badMachine, []byte("url: "+l.URL+"\nlogin: doctor-m\npassword: wrong-password-000\n"), 0o600)
	os.WriteFile(badKey, []byte("not-the-key\n"), 0o600)
	env, _, _ = testDoctorEnv(t, cfg(badMachine, badKey), 0o600)
	rs = newDoctor(env).checkCrowdsec(context.Background())
	wantResult(t, rs[1], Fail, "login refused", "cscli machines add")
	wantResult(t, rs[2], Fail, "API key refused", "cscli bouncers add")

	l.Stop()
	env, _, _ = testDoctorEnv(t, cfg(machine, key), 0o600)
	rs = newDoctor(env).checkCrowdsec(context.Background())
	wantResult(t, rs[0], Fail, "unreachable", "start the LAPI")

	env, _, _ = testDoctorEnv(t, "", 0o600)
	rs = newDoctor(env).checkCrowdsec(context.Background())
	wantResult(t, rs[0], Skip, "not shared", "")
}
