package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/mailhook/mailhook/config"
	"io"
	"net"
	"net/http"
	"time"
)

// healthcheckVerb asks a running mailhook for /healthz (or /readyz with --ready) and exits 0 on
// 200, 1 otherwise. It exists for the container HEALTHCHECK: a distroless image has no shell and
// no curl. The address comes from --addr, else from http.listen of --config, else the default
// 127.0.0.1:9090; a wildcard host (0.0.0.0, ::, "") is asked on loopback. The config is only read
// for http.listen: no rule is compiled and nothing is connected.
func healthcheckVerb(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	path := configFlag(fs)
	addr := fs.String("addr", "", "`host:port` of the HTTP listener (default: http.listen of --config, else "+config.DefaultHTTPListen+")")
	ready := fs.Bool("ready", false, "check /readyz instead of /healthz")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this `duration`")
	if !parseFlags(fs, args, stderr) {
		return exitConfig
	}
	target := *addr
	if target == "" && *path != "" {
		cfg, _, err := config.Load(*path, config.Options{NoSecrets: true})
		if err != nil {
			fmt.Fprintf(stderr, "mailhook: config %s:\n%s\n", *path, indent(err.Error()))
			return exitConfig
		}
		if cfg.HTTP.Listen == "" {
			fmt.Fprintf(stderr, "mailhook healthcheck: http.listen is \"\" in %s: nothing to ask\n", *path)
			return exitConfig
		}
		target = cfg.HTTP.Listen
	}
	if target == "" {
		target = config.DefaultHTTPListen
	}
	url, err := healthURL(target, *ready)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook healthcheck: %v\n", err)
		return exitConfig
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook healthcheck: %v\n", err)
		return exitConfig
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil}} // never through an HTTP(S)_PROXY
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "mailhook healthcheck: %v\n", err)
		return exitFail
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "mailhook healthcheck: %s: %s\n%s", url, resp.Status, body)
		return exitFail
	}
	fmt.Fprintf(stdout, "%s: %s\n", url, resp.Status)
	return exitOK
}

// healthURL builds the probe URL for a listen address, asking a wildcard host on loopback.
func healthURL(listen string, ready bool) (string, error) {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "", fmt.Errorf("address %q: want host:port: %w", listen, err)
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	path := "/healthz"
	if ready {
		path = "/readyz"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}
