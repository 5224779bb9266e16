package testmail

import "syscall"

// postgresSysProcAttr runs the postmaster as cred (nil: as ourselves) and asks the kernel to send
// it SIGQUIT (immediate shutdown) if the test process dies without running its cleanups.
func postgresSysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
}
