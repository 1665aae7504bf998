package localpg

import "syscall"

// sysProcAttr runs a child as cred's user (nil: as the caller) and has the
// kernel send it deathSig when the thread that started it exits.
func sysProcAttr(cred *syscall.Credential, deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: deathSig}
}
