package config

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// Errors is every problem found in one file, in file order. It prints one
// problem a line; errors.As finds each *Error inside it.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	if len(es) > 1 {
		return fmt.Sprintf("%d problems in the configuration:\n%s", len(es), strings.Join(lines, "\n"))
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.Is and errors.As see every problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

func (es Errors) orNil() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// validateRun holds the checks that `run` used to meet only when it started
// the firewall or the metrics listener: they belong here so that `config
// check` (the unit's ExecStartPre) refuses what `run` would refuse.
func (c *Config) validateRun(data []byte) Errors {
	var errs Errors
	bad := func(key, format string, args ...any) {
		errs = append(errs, &Error{File: c.Path, Line: lineOf(data, key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	for _, p := range c.Firewall.Allow {
		// The firewall's sets take /1 to /32 (/128); /0 would let every
		// attacker past the bans and the country filter.
		if p.Bits() == 0 || p.Addr().Is4In6() && p.Bits() <= 96 {
			bad("firewall.allow", "%s covers the whole address space: every attacker would be let in; list your own networks instead, e.g. \"203.0.113.0/24\"", p.Prefix)
		}
	}
	// A literal loopback address or unix:/path only (listen.go): a name,
	// even localhost, is resolved through /etc/hosts.
	if msg := checkListen(c.Metrics.Listen); msg != "" {
		bad("metrics.listen", "%s", msg)
	}
	return errs
}

// LoadForRun reads and checks path exactly as `run` needs it: Load's checks
// plus the secrets (present, private, not empty). `config check` and `run`
// both call it, so the unit's ExecStartPre refuses what `run` would refuse.
// replay is `run --replay`, which needs no AMI login.
func LoadForRun(path string, replay bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// Load words a missing or unreadable file.
		_, err = Load(path)
		return nil, err
	}
	// A file another user can change is refused whatever it says.
	if err := CheckOwner(path); err != nil {
		return nil, err
	}
	c, err := Parse(path, data)
	var errs Errors
	if v, ok := err.(validated); ok {
		// The file decoded but has bad values: check the secrets too, so
		// that one run of config check lists every problem.
		c, errs = v.c, asErrors(v.err)
	} else if err != nil {
		return nil, err
	} else if err := checkFileMode(c, path, data); err != nil {
		return nil, err
	}
	// Load's check of who may change the file, as one more problem.
	if err := CheckOwner(path); err != nil {
		errs = append(errs, &Error{File: path, Msg: strings.TrimPrefix(err.Error(), ErrUnsafeOwner.Error()+": "), Err: err})
	}
	if !replay {
		errs = append(errs, c.checkSecret(data, "ami.secret", "ami.secret_file", c.AMI.Secret, c.AMI.SecretFile, true)...)
	}
	if c.ARI.URL != "" && !replay {
		errs = append(errs, c.checkSecret(data, "ari.password", "ari.password_file", c.ARI.Password, c.ARI.PasswordFile, true)...)
		if c.ARI.Username == "" {
			errs = append(errs, &Error{File: c.Path, Line: lineOf(data, "ari.url"), Key: "ari.username",
				Msg: "[ari] url is set but username is empty: set username (ari.conf's user), or remove url to run on AMI alone"})
		}
		if !strings.HasPrefix(c.ARI.URL, "http://") && !strings.HasPrefix(c.ARI.URL, "https://") {
			errs = append(errs, &Error{File: c.Path, Line: lineOf(data, "ari.url"), Key: "ari.url",
				Msg: fmt.Sprintf("%q is not an http(s) URL: write e.g. \"http://127.0.0.1:8088/ari\"", c.ARI.URL)})
		}
	} else if c.ARI.PasswordFile != "" && !replay {
		errs = append(errs, c.checkSecret(data, "ari.password", "ari.password_file", c.ARI.Password, c.ARI.PasswordFile, false)...)
	}
	if g := c.Control.Group; g != "" && !replay {
		// run resolves the name when it opens the control socket.
		if _, err := strconv.ParseUint(g, 10, 32); err != nil {
			if _, err := user.LookupGroup(g); err != nil {
				errs = append(errs, &Error{File: c.Path, Line: lineOf(data, "control.group"), Key: "control.group",
					Msg: fmt.Sprintf("no group %q on this host: create it (groupadd %s) or give a numeric gid", g, g)})
			}
		}
	}
	if c.Crowdsec.Enabled && !replay {
		if _, _, err := c.CrowdsecCredentials(); err != nil {
			key := "crowdsec.machine_credentials_file"
			if strings.HasPrefix(err.Error(), "crowdsec.bouncer_key_file") {
				key = "crowdsec.bouncer_key_file"
			}
			errs = append(errs, &Error{File: c.Path, Line: lineOf(data, key), Key: key, Msg: strings.TrimPrefix(err.Error(), key+": "), Err: err})
		}
	}
	if err := errs.sorted().orNil(); err != nil {
		return nil, err
	}
	return c, nil
}

// validated is Parse's error when the file decoded but failed validation:
// it keeps the decoded config for LoadForRun's further checks.
type validated struct {
	c   *Config
	err error
}

func (v validated) Error() string { return v.err.Error() }
func (v validated) Unwrap() error { return v.err }

func asErrors(err error) Errors {
	if es, ok := err.(Errors); ok {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return Errors{e}
	}
	return Errors{{Msg: err.Error()}}
}

// sorted orders problems by line (problems without a line last), keeping
// the order of problems on the same line.
func (es Errors) sorted() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		la, lb := a.Line, b.Line
		if la == 0 {
			la = math.MaxInt
		}
		if lb == 0 {
			lb = math.MaxInt
		}
		return cmp.Compare(la, lb)
	})
	return es
}

// checkSecret checks one secret: inline or in a file that exists, is mode
// 0600 (or stricter) and is not empty. Each problem names the key and says
// what to do.
func (c *Config) checkSecret(data []byte, inlineKey, fileKey, inline, file string, required bool) Errors {
	at := func(key, msg string, cause error) Errors {
		line := lineOf(data, key)
		if line == 0 {
			line = tableLine(data, key[:strings.IndexByte(key, '.')])
		}
		return Errors{{File: c.Path, Line: line, Key: key, Msg: msg, Err: cause}}
	}
	if file == "" {
		if inline == "" && required {
			short := func(k string) string { return k[strings.IndexByte(k, '.')+1:] }
			return at(fileKey, fmt.Sprintf("[%s] has neither %s nor %s: set %s = \"/etc/sipsentry/%s\" and write the secret there on one line (mode 0600)",
				fileKey[:strings.IndexByte(fileKey, '.')], short(inlineKey), short(fileKey), short(fileKey), secretFileName(fileKey)), nil)
		}
		return nil
	}
	st, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return at(fileKey, fmt.Sprintf("%s does not exist: create it with the secret on one line (install -m 600 /dev/null %s, then edit it), or correct the path", file, file), err)
	case errors.Is(err, fs.ErrPermission):
		return at(fileKey, fmt.Sprintf("%s cannot be read (permission denied): run as root, or as the user the daemon runs as", file), err)
	case err != nil:
		return at(fileKey, fmt.Sprintf("%s: %v", file, err), err)
	case st.IsDir():
		return at(fileKey, fmt.Sprintf("%s is a directory: name the file holding the secret", file), nil)
	case st.Mode().Perm()&0o077 != 0:
		return at(fileKey, fmt.Sprintf("%s is mode %04o and holds a secret: run chmod 600 %s", file, st.Mode().Perm(), file), ErrInsecure)
	}
	// Then exactly what run does with it (owner, mode of its directory,
	// empty file), worded by the function run calls.
	if _, err := ReadSecretFile(file); err != nil {
		msg := err.Error()
		for _, sentinel := range []error{ErrUnsafeOwner, ErrInsecure} {
			msg = strings.TrimPrefix(msg, sentinel.Error()+": ")
		}
		return at(fileKey, strings.TrimPrefix(msg, "config: "), err)
	}
	return nil
}

// tableLine is the line of the [table] header, 0 if the file has none.
func tableLine(data []byte, table string) int {
	for n, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == "["+table+"]" {
			return n + 1
		}
	}
	return 0
}

func secretFileName(fileKey string) string {
	if strings.HasPrefix(fileKey, "ari.") {
		return "ari.password"
	}
	return "ami.secret"
}
