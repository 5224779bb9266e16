package config

import (
	"net"
	"strconv"
)

// HTTPConfig is the operations listener (/healthz, /readyz, /metrics).
type HTTPConfig struct {
	Listen string `mapstructure:"listen"` // host:port; "" disables the listener
}

// DefaultHTTPListen is http.listen when the file does not set it.
const DefaultHTTPListen = "127.0.0.1:9090"

func (h *HTTPConfig) validate(p *problems) {
	if h.Listen == "" {
		return
	}
	if _, port, err := net.SplitHostPort(h.Listen); err != nil {
		p.add("http.listen", "want host:port (or \"\" to disable): %v", err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add("http.listen", "invalid port %q", port)
	}
}
