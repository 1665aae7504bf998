//go:build unix && !linux

package localpg

import "syscall"

// sysProcAttr runs a child as cred's user (nil: as the caller). Outside
// Linux there is no parent-death signal: a server whose service was killed
// keeps running until stopped by hand.
func sysProcAttr(cred *syscall.Credential, _ syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}
