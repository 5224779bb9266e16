package testmail

import (
	"os"
	"syscall"
)

// dovecotSysProcAttr starts the Dovecot master in a process group of its own, so that Stop can
// signal every Dovecot process at once, and asks the kernel to SIGTERM the master if the test
// process dies without running its cleanups.
func dovecotSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// signalGroup sends sig to the process group that p leads: the Dovecot master and all of its
// login, auth and mail processes, including mail processes the master would leave serving their
// clients after it exits.
func signalGroup(p *os.Process, sig syscall.Signal) error {
	return syscall.Kill(-p.Pid, sig)
}
