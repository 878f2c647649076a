package crowdsec

import (
	"fmt"
	"io"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxCredentialsBytes: a credentials file is three short lines.
const maxCredentialsBytes = 64 << 10

// ReadMachineCredentials reads a watcher's credentials file as
// `cscli machines add NAME -f FILE` writes it (YAML: url, login, password).
// The caller checks the file's mode first (it holds a secret).
func ReadMachineCredentials(path string) (MachineCredentials, error) {
	b, err := readSmall(path)
	if err != nil {
		return MachineCredentials{}, err
	}
	var f struct {
		URL      string `yaml:"url"`
		Login    string `yaml:"login"`
		Password string `yaml:"password"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return MachineCredentials{}, fmt.Errorf("crowdsec: %s: not a cscli credentials file (url, login, password): %v", path, err)
	}
	if f.Login == "" || f.Password == "" {
		return MachineCredentials{}, fmt.Errorf("crowdsec: %s: login or password missing; create it with: cscli machines add NAME -f %s", path, path)
	}
	return MachineCredentials{URL: f.URL, Login: f.Login, Password: f.Password}, nil
}

// ReadAPIKey reads a bouncer API key (`cscli bouncers add NAME -o raw`) from
// a file holding it on one line.
func ReadAPIKey(path string) (string, error) {
	b, err := readSmall(path)
	if err != nil {
		return "", err
	}
	k := strings.TrimSpace(string(b))
	if k == "" || strings.ContainsAny(k, " \t\r\n") {
		return "", fmt.Errorf("crowdsec: %s: want the bouncer API key alone on one line (cscli bouncers add NAME -o raw > %s)", path, path)
	}
	return k, nil
}

func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("crowdsec: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCredentialsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("crowdsec: %w", err)
	}
	if len(b) > maxCredentialsBytes {
		return nil, fmt.Errorf("crowdsec: %s is larger than a credentials file can be", path)
	}
	return b, nil
}
