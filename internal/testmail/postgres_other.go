//go:build !linux

package testmail

import "syscall"

// postgresSysProcAttr runs the postmaster as cred (nil: as ourselves).
func postgresSysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
