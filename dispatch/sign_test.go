package dispatch

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Only whsec_ + base64 of 24 to 64 bytes is accepted, and errors never echo the secret.
func TestParseSecret(t *testing.T) {
	b := func(n int) string { return base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xA5}, n)) }
	for _, tc := range []struct {
		in      string
		wantLen int // 0: error
	}{
		{"whsec_" + b(24), 24},
		{"whsec_" + b(32), 32},
		{"whsec_" + b(64), 64},
		{"whsec_" + strings.TrimRight(b(32), "="), 32}, // unpadded
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 24}, // the specification's example
		{"whsec_" + b(23), 0},
		{"whsec_" + b(65), 0},
		{b(32), 0},
		{"WHSEC_" + b(32), 0},
		{"whsec_" + b(32)[:20] + "!!" + b(32)[22:], 0},
		{"whsec_", 0},
		{"", 0},
		{"whsec_" + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32)), 0},
	} {
		key, err := ParseSecret(tc.in)
		if tc.wantLen == 0 {
			if err == nil {
				t.Errorf("ParseSecret(%q) accepted", tc.in)
				continue
			}
			if rest := strings.TrimPrefix(tc.in, "whsec_"); len(rest) >= 4 && strings.Contains(err.Error(), rest[:4]) ||
				tc.in != "" && strings.Contains(err.Error(), tc.in) {
				t.Errorf("error %q echoes the secret", err)
			}
			continue
		}
		if err != nil || len(key) != tc.wantLen {
			t.Errorf("ParseSecret(%q) = %d bytes, %v; want %d bytes", tc.in, len(key), err, tc.wantLen)
		}
	}
}

func TestSignatureMatchesOfficialLibrary(t *testing.T) {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	key, err := ParseSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	id, ts, body := "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`)
	want, err := wh.Sign(id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	if got := signature([][]byte{key}, id, ts, body); got != want {
		t.Errorf("signature = %q, want %q", got, want)
	}
	// The specification's published test vector.
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; signature([][]byte{key}, id, ts, body) != want {
		t.Errorf("signature differs from the specification's example %q", want)
	}
}
