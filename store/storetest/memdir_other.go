//go:build !linux

package storetest

// memDir returns "": outside Linux the test cluster lives in the default
// temporary directory.
func memDir() string { return "" }
