package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/mailhook/mailhook/config"
	"github.com/mailhook/mailhook/oauth"
)

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// authVerb runs `mailhook auth`.
func authVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("auth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printHelp(fs.Output(), fs) }
	var (
		clientID     = fs.String("client-id", "", "OAuth client `ID` (required)")
		clientSecret = fs.String("client-secret", "", "OAuth client `secret` (Google desktop apps have one; Microsoft public clients none)")
		secretFile   = fs.String("client-secret-file", "", "read the client secret from `FILE` instead")
		out          = fs.String("out", "", "write the refresh token to `FILE` (mode 0600; required)")
		listen       = fs.String("listen", "", "loopback `address` for the redirect (default 127.0.0.1 on a free port)")
		tenant       = fs.String("tenant", "", "Microsoft Entra `tenant` ID or domain (default common)")
		flow         = fs.String("flow", "", "`loopback` or device (default: loopback for google and custom, device for microsoft)")
		authURL      = fs.String("auth-url", "", "authorization endpoint `URL` (custom; replaces the provider's)")
		tokenURL     = fs.String("token-url", "", "token endpoint `URL` (custom; replaces the provider's)")
		deviceURL    = fs.String("device-url", "", "device authorization endpoint `URL` (custom; replaces the provider's)")
		timeout      = fs.Duration("timeout", 10*time.Minute, "give up after this long")
		scopes       stringList
	)
	fs.Var(&scopes, "scope", "`scope` to ask for, repeatable (default: the provider's mail scopes)")
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fs.Usage()
		return exitConfig
	}
	provider := strings.ToLower(args[0])
	if err := fs.Parse(args[1:]); err != nil {
		return exitConfig
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mailhook auth: unexpected argument %q\n", fs.Arg(0))
		return exitConfig
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "mailhook auth: "+format+"\n", a...)
		return exitConfig
	}
	switch {
	case provider != config.ProviderGoogle && provider != config.ProviderMicrosoft && provider != config.ProviderCustom:
		return fail("provider %q: want google, microsoft or custom", provider)
	case *clientID == "":
		return fail("--client-id is required")
	case *out == "":
		return fail("--out FILE is required")
	case *clientSecret != "" && *secretFile != "":
		return fail("give --client-secret or --client-secret-file, not both")
	}
	if *secretFile != "" {
		s, err := config.ReadSecretFile(*secretFile)
		if err != nil {
			return fail("--client-secret-file: %v", err)
		}
		*clientSecret = strings.TrimSpace(s)
	}
	ep, err := oauth.Endpoint(provider, *tenant, *tokenURL)
	if err != nil {
		return fail("%v", err)
	}
	if *authURL != "" {
		ep.AuthURL = *authURL
	}
	if *deviceURL != "" {
		ep.DeviceAuthURL = *deviceURL
	}
	if len(scopes) == 0 {
		scopes = oauth.DefaultScopes(provider)
	}
	if len(scopes) == 0 {
		return fail("--scope is required for provider custom")
	}
	if *flow == "" {
		*flow = "loopback"
		if provider == config.ProviderMicrosoft {
			*flow = "device"
		}
	}
	oc := &oauth2.Config{ClientID: *clientID, ClientSecret: *clientSecret, Endpoint: ep, Scopes: scopes}

	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	var tok *oauth2.Token
	switch *flow {
	case "loopback":
		if ep.AuthURL == "" {
			return fail("--auth-url is required for the loopback flow of provider %s", provider)
		}
		tok, err = oauth.Loopback(ctx, oc, oauth.LoopbackOptions{
			Listen:  *listen,
			Options: oauth.AuthCodeOptions(provider),
			Show: func(u string) {
				fmt.Fprintf(stdout, "Open this URL in a browser on this machine (or through ssh -L) and allow access:\n\n  %s\n\nWaiting for the browser to come back to 127.0.0.1 …\n", u)
			},
		})
	case "device":
		if ep.DeviceAuthURL == "" {
			return fail("--device-url is required for the device flow of provider %s", provider)
		}
		tok, err = oauth.Device(ctx, oc, nil, func(da *oauth2.DeviceAuthResponse) {
			fmt.Fprintf(stdout, "On any device, open %s and enter the code %s\nWaiting for you to sign in …\n",
				da.VerificationURI, da.UserCode)
		})
	default:
		return fail("--flow %q: want loopback or device", *flow)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mailhook auth: %v\n", err)
		return exitFail
	}
	if err := oauth.WriteFileAtomic(*out, []byte(tok.RefreshToken+"\n")); err != nil {
		fmt.Fprintf(stderr, "mailhook auth: %v\n", err)
		return exitFail
	}
	fmt.Fprintf(stdout, "Refresh token written to %s (mode 0600). In the configuration:\n\n"+
		"    oauth2:\n      provider: %s\n      client_id: %s\n      refresh_token_file: %s\n",
		*out, provider, *clientID, *out)
	return exitOK
}
