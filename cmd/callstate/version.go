package main

import (
	"runtime"
	"runtime/debug"
)

// Version and Commit are set at build time (-ldflags "-X main.Version=…");
// without them, version reads what the Go toolchain recorded.
var (
	Version = ""
	Commit  = ""
)

// version says which build this is: Version and Commit, else the module
// version and VCS revision the toolchain embedded, and the Go version.
func version() string {
	v, c := Version, Commit
	dirty := false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch {
			case s.Key == "vcs.revision" && c == "":
				c = s.Value
			case s.Key == "vcs.modified" && s.Value == "true":
				dirty = true
			}
		}
	}
	if v == "" {
		v = "devel"
	}
	if len(c) > 12 {
		c = c[:12]
	}
	out := v
	if c != "" {
		out += " commit " + c
		if dirty && Commit == "" {
			out += " (modified)"
		}
	}
	return out + " " + runtime.Version()
}
