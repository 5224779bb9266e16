package main

import "testing"

func TestHealthURL(t *testing.T) {
	for _, tc := range []struct {
		listen string
		ready  bool
		want   string
	}{
		{"127.0.0.1:9090", false, "http://127.0.0.1:9090/healthz"},
		{"0.0.0.0:9090", true, "http://127.0.0.1:9090/readyz"},
		{":9090", false, "http://127.0.0.1:9090/healthz"},
		{"[::]:9090", false, "http://[::1]:9090/healthz"},
		{"[::1]:9091", false, "http://[::1]:9091/healthz"},
	} {
		got, err := healthURL(tc.listen, tc.ready)
		if err != nil || got != tc.want {
			t.Errorf("healthURL(%q) = %q, %v; want %q", tc.listen, got, err, tc.want)
		}
	}
	if _, err := healthURL("9090", false); err == nil {
		t.Error("healthURL accepted an address without a port")
	}
}
