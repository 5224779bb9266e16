//go:build !linux

package testmail

import (
	"os"
	"syscall"
)

// dovecotSysProcAttr has nothing to add outside Linux.
func dovecotSysProcAttr() *syscall.SysProcAttr { return nil }

// signalGroup signals the Dovecot master only.
func signalGroup(p *os.Process, sig syscall.Signal) error { return p.Signal(sig) }
