package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestListsUpdateOffline: with the list source unreachable, `lists update`
// says it in one line — what failed, what is in use, and the hint to
// geo.lists_dir — instead of the raw dial error per list, a table and a
// summary; it never claims last good versions that do not exist, nor tells
// the admin to run the command they are running. Exit status 1.
func TestListsUpdateOffline(t *testing.T) {
	f := newListsFixture(t)
	addr := closedPort(t)
	offline := filepath.Join(t.TempDir(), "offline.toml")
	os.WriteFile(offline, []byte(`state_dir = "`+f.state+`"
[geo]
allow_countries = ["JP"]
list_url_v4 = "http://`+addr+`/country/{cc}/ipv4-aggregated.txt"
list_url_v6 = "http://`+addr+`/country/{cc}/ipv6-aggregated.txt"
`), 0o644)

	check := func(t *testing.T, wantState string) {
		t.Helper()
		out, errOut, err := geoCmdSplit(t, "-c", offline, "lists", "update")
		if err == nil || isUsage(err) {
			t.Fatalf("offline update: err = %v, want a failure (exit 1)", err)
		}
		msg := err.Error()
		if strings.Contains(msg, "\n") || out != "" || errOut != "" {
			t.Errorf("want one line and nothing else; error %q, stdout %q, stderr %q", msg, out, errOut)
		}
		for _, want := range []string{"cannot connect to " + addr, wantState, "geo.lists_dir", offline} {
			if !strings.Contains(msg, want) {
				t.Errorf("error %q lacks %q", msg, want)
			}
		}
		for _, not := range []string{"dial tcp", "Get \"", "lists update`", "sipsentry lists update"} {
			if strings.Contains(msg, not) {
				t.Errorf("error %q contains %q", msg, not)
			}
		}
	}
	t.Run("nothing downloaded yet", func(t *testing.T) {
		check(t, "no list has been downloaded yet")
	})
	t.Run("with last good lists", func(t *testing.T) {
		if out, err := geoCmd(t, "-c", f.config, "lists", "update"); err != nil {
			t.Fatalf("online update: %v\n%s", err, out)
		}
		check(t, "the last good lists stay in use")
	})
}

// TestListsAcceptCommand: a local list cut to 10 lines is refused by
// `lists update` (exit 1, the live list kept), taken by `lists accept FILE`
// (exit 0), and then in use; accept refuses what is not a list (exit 2).
func TestListsAcceptCommand(t *testing.T) {
	td := geoTestdata(t)
	lists := t.TempDir()
	for _, fam := range []string{"ipv4", "ipv6"} {
		b, err := os.ReadFile(filepath.Join(td, "jp-"+fam+"-aggregated.txt"))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(lists, "jp-"+fam+".txt"), b, 0o644)
	}
	cfg := filepath.Join(t.TempDir(), "sipsentry.toml")
	os.WriteFile(cfg, []byte(`state_dir = "`+t.TempDir()+`"
[geo]
allow_countries = ["JP"]
lists_dir = "`+lists+`"
`), 0o644)
	jp4 := shippedLines(t, "jp-ipv4")
	if out, err := geoCmd(t, "-c", cfg, "lists", "update"); err != nil {
		t.Fatalf("first update: %v\n%s", err, out)
	}
	path := filepath.Join(lists, "jp-ipv4.txt")
	b, _ := os.ReadFile(path)
	var ten []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") && len(ten) < 10 {
			ten = append(ten, l)
		}
	}
	os.WriteFile(path, []byte(strings.Join(ten, "\n")+"\n"), 0o644)

	out, err := geoCmd(t, "-c", cfg, "lists", "update")
	if err == nil || isUsage(err) || !strings.Contains(err.Error(), "last good version stays in use for jp-ipv4") {
		t.Fatalf("10-line update: err = %v\n%s", err, out)
	}
	if row := rowFields(t, out, "jp-ipv4"); row[1] != jp4 || row[3] != jp4 || !strings.Contains(out, "geo.min_entries") {
		t.Fatalf("10-line update row %q\n%s", row, out)
	}

	out, err = geoCmd(t, "-c", cfg, "lists", "accept", path)
	if err != nil {
		t.Fatalf("accept: %v\n%s", err, out)
	}
	if !strings.Contains(out, "jp-ipv4: accepted "+path+" (10 CIDR lines") {
		t.Errorf("accept said %q", out)
	}
	if out, err := geoCmd(t, "-c", cfg, "lists", "update"); err != nil {
		t.Fatalf("update after accept: %v\n%s", err, out)
	}
	out, err = geoCmd(t, "-c", cfg, "lists", "show")
	if err != nil {
		t.Fatal(err)
	}
	if row := rowFields(t, out, "jp-ipv4"); row[2] == jp4 {
		t.Errorf("lists show after accept still has the full list: %q", row)
	}

	html := filepath.Join(t.TempDir(), "jp-ipv4.txt")
	os.WriteFile(html, []byte("<html>502 Bad Gateway</html>\n"), 0o644)
	for _, args := range [][]string{{"lists", "accept", html}, {"lists", "accept"}, {"lists", "accept", filepath.Join(lists, "japan.txt")}} {
		if _, err := geoCmd(t, append([]string{"-c", cfg}, args...)...); err == nil || !isUsage(err) {
			t.Errorf("%v: err = %v, want a usage error (exit 2)", args, err)
		}
	}
}

// TestLookupBadAddressKeepsTheRest: one bad argument is reported after the
// other addresses are looked up (exit 2), and stderr says which data the
// answers rest on.
func TestLookupBadAddressKeepsTheRest(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipsentry.toml")
	os.WriteFile(cfg, []byte("state_dir = \""+dir+"\"\n"), 0o644)
	out, errOut, err := geoCmdSplit(t, "-c", cfg, "lookup", "198.51.100.1", "not-an-ip", "203.0.113.1")
	if err == nil || !isUsage(err) || !strings.Contains(err.Error(), `"not-an-ip" is not an IPv4 or IPv6 address`) {
		t.Fatalf("err = %v, want a usage error naming the bad argument", err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "198.51.100.1 ") || !strings.HasPrefix(lines[2], "203.0.113.1 ") {
		t.Fatalf("want a header and the two good addresses:\n%s", out)
	}
	for _, want := range []string{"geo.allow_countries is empty", "geo.mmdb: not set", `MMDB is "?"`, "geo.asn_mmdb: not set"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}

// TestLookupSaysWhatIsLoaded: with lists and a database the notes name
// them; with allowed countries but nothing downloaded they say so.
func TestLookupSaysWhatIsLoaded(t *testing.T) {
	td := geoTestdata(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "sipsentry.toml")
	os.WriteFile(cfg, []byte("state_dir = \""+dir+"\"\n[geo]\nallow_countries = [\"JP\"]\n"), 0o644)
	_, errOut, err := geoCmdSplit(t, "-c", cfg, "lookup", "133.242.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut, "lists: none downloaded yet in "+filepath.Join(dir, "lists")) {
		t.Errorf("no-lists note:\n%s", errOut)
	}
	_, errOut, err = geoCmdSplit(t, "-c", cfg, "lookup", "--mmdb", filepath.Join(td, "dbip-country.mmdb"), "--lists-dir", td, "133.242.0.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"lists: ", "jp-ipv4 (", " from " + td, "geo.mmdb: " + filepath.Join(td, "dbip-country.mmdb") + " ("} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
}
