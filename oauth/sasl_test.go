package oauth

import (
	"bytes"
	"encoding/base64"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-sasl"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %q\nwant %q", name, got, want)
	}
}

// TestXOAuth2InitialResponseGolden pins the wire form of XOAUTH2 with the
// example of Google's "OAuth 2.0 Mechanism" page: the base64 the transport sends.
func TestXOAuth2InitialResponseGolden(t *testing.T) {
	c := &XOAuth2Client{Username: "someuser@example.com", Token: "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"}
	mech, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	if mech != "XOAUTH2" {
		t.Errorf("mechanism %q, want XOAUTH2", mech)
	}
	want := "user=someuser@example.com\x01auth=Bearer ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg\x01\x01"
	if string(ir) != want {
		t.Errorf("initial response %q, want %q", ir, want)
	}
	golden(t, "xoauth2.b64", []byte(base64.StdEncoding.EncodeToString(ir)+"\n"))
}

func TestOAuthBearerInitialResponseGolden(t *testing.T) {
	c := &OAuthBearerClient{Username: "user,1=x@example.com", Token: "vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==", Host: "server.example.com", Port: 143}
	mech, ir, err := c.Start()
	if err != nil {
		t.Fatal(err)
	}
	if mech != "OAUTHBEARER" {
		t.Errorf("mechanism %q, want OAUTHBEARER", mech)
	}
	// RFC 7628 §4.1 with the authzid escaped per RFC 5801 §4.
	want := "n,a=user=2C1=3Dx@example.com,\x01host=server.example.com\x01port=143\x01auth=Bearer vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg==\x01\x01"
	if string(ir) != want {
		t.Errorf("initial response %q, want %q", ir, want)
	}
	golden(t, "oauthbearer.b64", []byte(base64.StdEncoding.EncodeToString(ir)+"\n"))
}

// TestErrorChallenge: on an error challenge the client answers as its mechanism requires (XOAUTH2
// empty, OAUTHBEARER %x01), reports the refusal, and aborts on a second challenge.
func TestErrorChallenge(t *testing.T) {
	challenge := []byte(`{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}`)
	for _, tc := range []struct {
		name   string
		client func(refused func(*ServerError)) sasl.Client
		answer []byte
	}{
		{"xoauth2", func(r func(*ServerError)) sasl.Client {
			return &XOAuth2Client{Username: "u@example.com", Token: "tok", Refused: r}
		}, []byte{}},
		{"oauthbearer", func(r func(*ServerError)) sasl.Client {
			return &OAuthBearerClient{Username: "u@example.com", Token: "tok", Refused: r}
		}, []byte{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got *ServerError
			c := tc.client(func(e *ServerError) { got = e })
			if _, _, err := c.Start(); err != nil {
				t.Fatal(err)
			}
			resp, err := c.Next(challenge)
			if err != nil {
				t.Fatalf("Next: %v", err)
			}
			if resp == nil || !bytes.Equal(resp, tc.answer) {
				t.Errorf("answer %q (nil=%v), want %q", resp, resp == nil, tc.answer)
			}
			if got == nil || got.Status != "400" || got.Scope != "https://mail.google.com/" {
				t.Errorf("Refused got %+v", got)
			}
			if _, err := c.Next(challenge); err == nil {
				t.Error("second challenge: no error, want the exchange aborted")
			}
		})
	}
}

func TestClientRefusesMalformedInput(t *testing.T) {
	for _, c := range []sasl.Client{
		&XOAuth2Client{Username: "u\x01x", Token: "tok"},
		&XOAuth2Client{Username: "u", Token: ""},
		&XOAuth2Client{Username: "u", Token: "a b"},
		&OAuthBearerClient{Username: "u", Token: "t\x01"},
	} {
		if _, _, err := c.Start(); err == nil {
			t.Errorf("%#v: Start accepted malformed input", c)
		}
	}
}
