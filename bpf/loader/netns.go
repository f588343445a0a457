// Running a function inside another network namespace: the interface lookup and the attach
// must both happen there (an ifindex means nothing outside its netns).
package main

import (
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// inNetns runs fn on a dedicated OS thread switched into the netns at path ("" = the
// loader's own). The thread is restored afterwards; if restoring fails it is left locked, so
// Go ends it with the goroutine instead of reusing a thread in the wrong namespace.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	done := make(chan error, 1)
	go func() {
		var panicked any
		defer func() {
			if panicked != nil {
				done <- fmt.Errorf("panic in netns %s: %v", path, panicked)
			}
		}()
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("get current netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(path)
		if err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("open netns %s: %w", path, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			done <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		var result error
		func() {
			defer func() { panicked = recover() }()
			result = fn()
		}()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread dies with this goroutine.
			if result == nil {
				result = fmt.Errorf("restore netns: %w", err)
			}
		} else {
			runtime.UnlockOSThread()
		}
		if panicked == nil {
			done <- result
		}
	}()
	return <-done
}

// ifindex looks up an interface by name in the current thread's netns.
func ifindex(name string) (int, error) {
	iface, err := net.InterfaceByName(name)
	if err != nil {
		// net reports a missing interface without an errno; ENODEV is what the kernel says.
		return 0, fmt.Errorf("interface %q: %v: %w", name, err, unix.ENODEV)
	}
	return iface.Index, nil
}
