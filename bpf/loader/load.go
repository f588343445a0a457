// The "load" op: load an object, pin its maps by name (reusing pins that exist) and pin its
// programs under progs/.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/cilium/ebpf"
)

type loadRequest struct {
	// Object is the path of a linked BPF ELF object (build/bpf/<name>.o).
	Object string `json:"object"`
	// PinDir is /sys/fs/bpf/skiff/<instance>; made if missing.
	PinDir string `json:"pinDir"`
	// MaxEntries overrides max_entries per map name (used only when the map is created).
	MaxEntries map[string]uint32 `json:"maxEntries,omitempty"`
}

type mapResult struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	KeySize    uint32 `json:"keySize"`
	ValueSize  uint32 `json:"valueSize"`
	MaxEntries uint32 `json:"maxEntries"`
	Pin        string `json:"pin,omitempty"`
	// Reused is true when the map was already pinned and its contents were kept.
	Reused bool `json:"reused"`
}

type programResult struct {
	Name string `json:"name"`
	Type string `json:"type"`
	ID   uint32 `json:"id"`
	Pin  string `json:"pin"`
}

func opLoad(op string, line []byte) (map[string]any, error) {
	var req loadRequest
	if err := decodeStrict(op, line, &req); err != nil {
		return nil, err
	}
	if req.Object == "" {
		return nil, failf(op, "", codeBadRequest, "object is required")
	}
	createdDir := false
	if err := checkPinDir(op, req.PinDir, false); err != nil {
		var oe *opError
		// A missing pin dir is made below; anything else (not bpffs, bad path) is final.
		if !errors.As(err, &oe) || oe.code != codeNotFound {
			return nil, err
		}
		createdDir = true
	}
	spec, err := ebpf.LoadCollectionSpec(req.Object)
	if err != nil {
		return nil, kernelFail(op, req.Object, fmt.Errorf("read object %s: %w", req.Object, err))
	}
	for name, size := range req.MaxEntries {
		m, ok := spec.Maps[name]
		if !ok {
			return nil, failf(op, name, codeBadRequest, "maxEntries names map %q, which %s does not define", name, req.Object)
		}
		if size == 0 {
			return nil, failf(op, name, codeBadRequest, "maxEntries of map %q must be > 0", name)
		}
		m.MaxEntries = size
	}
	if err := checkPinDir(op, req.PinDir, true); err != nil {
		return nil, err
	}

	maps := make([]mapResult, 0, len(spec.Maps))
	for name, m := range spec.Maps {
		r := mapResult{
			Name: name, Type: m.Type.String(), KeySize: m.KeySize, ValueSize: m.ValueSize,
			MaxEntries: m.MaxEntries,
		}
		if m.Pinning == ebpf.PinByName {
			r.Pin = filepath.Join(req.PinDir, name)
			if _, err := os.Stat(r.Pin); err == nil {
				r.Reused = true
			}
		}
		maps = append(maps, r)
	}

	// undo removes what this load pinned, so a failed load leaves the pin dir as it was:
	// maps it created (reused maps keep their pins and contents) and a dir it made.
	undo := func() {
		for _, m := range maps {
			if m.Pin != "" && !m.Reused {
				_ = os.Remove(m.Pin)
			}
		}
		if createdDir {
			_ = os.RemoveAll(req.PinDir)
		}
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{
		Maps: ebpf.MapOptions{PinPath: req.PinDir},
	})
	if err != nil {
		undo()
		if errors.Is(err, ebpf.ErrMapIncompatible) {
			return nil, fail(op, req.Object, codeIncompat, fmt.Errorf(
				"%w (a pinned map in %s differs from the object's definition: remove the pin dir or keep the old size)",
				err, req.PinDir))
		}
		return nil, kernelFail(op, req.Object, fmt.Errorf("load %s: %w", req.Object, err))
	}
	defer coll.Close()

	// A reused map keeps its kernel size; report what is really there.
	for i := range maps {
		if m, ok := coll.Maps[maps[i].Name]; ok {
			if info, err := m.Info(); err == nil {
				maps[i].MaxEntries = info.MaxEntries
			}
		}
	}

	programs := make([]programResult, 0, len(coll.Programs))
	for name, prog := range coll.Programs {
		if err := checkPinName(op, "program", name); err != nil {
			return nil, err
		}
		pin := filepath.Join(req.PinDir, progsSubdir, name)
		if err := replacePin(pin, prog.Pin); err != nil {
			undo()
			return nil, kernelFail(op, name, fmt.Errorf("pin program %s: %w", name, err))
		}
		r := programResult{Name: name, Type: prog.Type().String(), Pin: pin}
		if info, err := prog.Info(); err == nil {
			if id, ok := info.ID(); ok {
				r.ID = uint32(id)
			}
		}
		programs = append(programs, r)
	}
	sort.Slice(maps, func(i, j int) bool { return maps[i].Name < maps[j].Name })
	sort.Slice(programs, func(i, j int) bool { return programs[i].Name < programs[j].Name })
	return map[string]any{"object": req.Object, "pinDir": req.PinDir, "maps": maps, "programs": programs}, nil
}
