package role

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCreds makes a credentials directory as systemd does for a unit
// (LoadCredential=): one file per credential.
func writeCreds(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o400); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestParseTakesCredentials(t *testing.T) {
	dir := writeCreds(t, map[string]string{
		// The files of the shipped unit's credentials directory.
		"terminator_ETCD_CA":                "-----BEGIN CERTIFICATE-----\n",
		"terminator_ETCD_PASSWORD":          "from-credential\n",
		"terminator_TERMINATOR_ADMIN_TOKEN": "cred-token\r\n",
		"terminator_TERMINATOR_STORE":       "postgres://terminator:secret@db:5432/terminator\n",
		"terminator_TERMINATOR_TTL":         "9s",
		// LoadCredential=ETCD_KEY:/path names it without the prefix.
		"ETCD_KEY": "-----BEGIN PRIVATE KEY-----\n",
	})
	t.Setenv("CREDENTIALS_DIRECTORY", dir)
	t.Setenv("TERMINATOR_TTL", "4s") // the environment wins over a credential

	fs, c, _ := flags("profiles")
	if err := Parse(fs, nil); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name      string
		got, want any
	}{
		{"etcd-ca (a file: its path)", c.Etcd.CA, filepath.Join(dir, "terminator_ETCD_CA")},
		{"etcd-key (unprefixed name)", c.Etcd.Key, filepath.Join(dir, "ETCD_KEY")},
		{"etcd-password (content, newline dropped)", c.Etcd.Password, "from-credential"},
		{"admin-token", c.Admin.Token, "cred-token"},
		{"store", c.Store, "postgres://terminator:secret@db:5432/terminator"},
		{"ttl (environment wins)", c.TTL, 4 * time.Second},
		{"etcd-cert (no credential: default)", c.Etcd.Cert, ""},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestParseRefusesBadCredentials(t *testing.T) {
	for _, tt := range []struct {
		name, file, content string
		want                []string
		never               string
	}{
		{"a value that does not parse", "terminator_TERMINATOR_TIMEOUT", "3",
			[]string{"terminator_TERMINATOR_TIMEOUT", "want a duration", "-timeout"}, ""},
		{"too large", "terminator_ETCD_PASSWORD", strings.Repeat("x", maxCredential+1),
			[]string{"terminator_ETCD_PASSWORD", "larger than 65536 bytes"}, "xxxx"},
		{"out of range, secret not repeated", "terminator_TERMINATOR_MAX_WAITING", "0",
			[]string{"terminator_TERMINATOR_MAX_WAITING", "-max-waiting"}, `"0"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("CREDENTIALS_DIRECTORY", writeCreds(t, map[string]string{tt.file: tt.content}))
			fs, _, _ := flags("front")
			err := Parse(fs, nil)
			if err == nil {
				t.Fatalf("Parse = nil, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse = %v, want it to say %q", err, w)
				}
			}
			if tt.never != "" && strings.Contains(err.Error(), tt.never) {
				t.Errorf("Parse = %v: repeats the credential's content", err)
			}
		})
	}
}
