// The "list" and "remove" ops: what a pin dir holds (maps, programs, links with their
// targets), and removing all of it (links detached first).
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// linkTarget is where a link attaches, read back from the kernel.
type linkTarget struct {
	// Kind is "tc", "xdp" or "cgroup".
	Kind        string `json:"kind"`
	LinkID      uint32 `json:"linkId"`
	ProgramID   uint32 `json:"programId"`
	ProgramName string `json:"programName,omitempty"` // the kernel's name (first 15 chars)
	Ifindex     uint32 `json:"ifindex,omitempty"`     // tc, xdp: in the netns it was attached in
	Direction   string `json:"direction,omitempty"`   // tc: ingress | egress
	CgroupID    uint64 `json:"cgroupId,omitempty"`    // cgroup: the cgroup's inode number
	Hook        string `json:"hook,omitempty"`        // cgroup: connect4 | sendmsg4 | ...
}

type linkEntry struct {
	Name string `json:"name"`
	Pin  string `json:"pin"`
	linkTarget
}

type listRequest struct {
	PinDir string `json:"pinDir"`
}

func pinnedNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

func opList(op string, line []byte) (map[string]any, error) {
	var req listRequest
	if err := decodeStrict(op, line, &req); err != nil {
		return nil, err
	}
	if err := checkPinDir(op, req.PinDir, false); err != nil {
		return nil, err
	}
	mapNames, err := pinnedNames(req.PinDir)
	if err != nil {
		return nil, kernelFail(op, req.PinDir, err)
	}
	maps := []mapResult{}
	for _, name := range mapNames {
		pin := filepath.Join(req.PinDir, name)
		m, err := ebpf.LoadPinnedMap(pin, nil)
		if err != nil {
			return nil, kernelFail(op, pin, err)
		}
		r := mapResult{Name: name, Pin: pin, Type: m.Type().String(), KeySize: m.KeySize(),
			ValueSize: m.ValueSize(), MaxEntries: m.MaxEntries(), Reused: true}
		m.Close()
		maps = append(maps, r)
	}
	progNames, err := pinnedNames(filepath.Join(req.PinDir, progsSubdir))
	if err != nil {
		return nil, kernelFail(op, req.PinDir, err)
	}
	programs := []programResult{}
	for _, name := range progNames {
		pin := filepath.Join(req.PinDir, progsSubdir, name)
		p, err := ebpf.LoadPinnedProgram(pin, nil)
		if err != nil {
			return nil, kernelFail(op, pin, err)
		}
		r := programResult{Name: name, Pin: pin, Type: p.Type().String()}
		if info, err := p.Info(); err == nil {
			if id, ok := info.ID(); ok {
				r.ID = uint32(id)
			}
		}
		p.Close()
		programs = append(programs, r)
	}
	linkNames, err := pinnedNames(filepath.Join(req.PinDir, linksSubdir))
	if err != nil {
		return nil, kernelFail(op, req.PinDir, err)
	}
	links := []linkEntry{}
	for _, name := range linkNames {
		pin := filepath.Join(req.PinDir, linksSubdir, name)
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			return nil, kernelFail(op, pin, err)
		}
		t, err := targetOf(l)
		l.Close()
		if err != nil {
			return nil, kernelFail(op, pin, err)
		}
		links = append(links, linkEntry{Name: name, Pin: pin, linkTarget: t})
	}
	return map[string]any{"pinDir": req.PinDir, "maps": maps, "programs": programs, "links": links}, nil
}

type removeRequest struct {
	PinDir string `json:"pinDir"`
}

// opRemove detaches every link, then unpins programs and maps and removes the pin dir.
// A pin dir that does not exist is success (removed=false).
func opRemove(op string, line []byte) (map[string]any, error) {
	var req removeRequest
	if err := decodeStrict(op, line, &req); err != nil {
		return nil, err
	}
	if err := checkPinDir(op, req.PinDir, false); err != nil {
		var oe *opError
		if errors.As(err, &oe) && oe.code == codeNotFound {
			return map[string]any{"pinDir": req.PinDir, "removed": false, "detached": 0}, nil
		}
		return nil, err
	}
	linkNames, err := pinnedNames(filepath.Join(req.PinDir, linksSubdir))
	if err != nil {
		return nil, kernelFail(op, req.PinDir, err)
	}
	detached := 0
	for _, name := range linkNames {
		ok, err := detachPinned(filepath.Join(req.PinDir, linksSubdir, name))
		if err != nil {
			return nil, kernelFail(op, name, err)
		}
		if ok {
			detached++
		}
	}
	if err := os.RemoveAll(req.PinDir); err != nil {
		return nil, kernelFail(op, req.PinDir, fmt.Errorf("remove %s: %w", req.PinDir, err))
	}
	return map[string]any{"pinDir": req.PinDir, "removed": true, "detached": detached}, nil
}
