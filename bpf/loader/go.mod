module skiff.dev/loader

go 1.25.0

require (
	github.com/cilium/ebpf v0.22.0
	github.com/vishvananda/netns v0.0.5
	golang.org/x/sys v0.43.0
)
