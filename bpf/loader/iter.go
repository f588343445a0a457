// The "run_iter" op: run a pinned BPF iterator program (SEC("iter/...")) once and return what
// it printed. The agent uses it to destroy stale connected UDP sockets (bpf/sock_destroy.c).
// A socket iterator walks the sockets of the network namespace the iterator is opened in, so
// the open and the read happen inside Netns.
package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// defaultIterMaxBytes bounds what one run reads: the iterator stops being read there and
// the rest of the walk is not done (truncated=true says so).
const defaultIterMaxBytes = 1 << 20

type runIterRequest struct {
	PinDir string `json:"pinDir"`
	// Program is the name of an iterator program pinned by "load" under progs/.
	Program string `json:"program"`
	// Netns is a netns path (/run/netns/NAME, /proc/PID/ns/net); default the loader's own.
	Netns string `json:"netns,omitempty"`
	// MaxBytes bounds the output read; default 1 MiB.
	MaxBytes int `json:"maxBytes,omitempty"`
}

func opRunIter(op string, line []byte) (map[string]any, error) {
	var req runIterRequest
	if err := decodeStrict(op, line, &req); err != nil {
		return nil, err
	}
	if err := checkPinName(op, "program", req.Program); err != nil {
		return nil, err
	}
	if req.MaxBytes < 0 {
		return nil, failf(op, "", codeBadRequest, "maxBytes must be >= 0 (0 = default %d)", defaultIterMaxBytes)
	}
	if req.MaxBytes == 0 {
		req.MaxBytes = defaultIterMaxBytes
	}
	if req.Netns != "" && !filepath.IsAbs(req.Netns) {
		return nil, failf(op, req.Netns, codeBadRequest, "netns %q must be an absolute path", req.Netns)
	}
	if err := checkPinDir(op, req.PinDir, false); err != nil {
		return nil, err
	}
	progPin := filepath.Join(req.PinDir, progsSubdir, req.Program)
	prog, err := ebpf.LoadPinnedProgram(progPin, nil)
	if err != nil {
		return nil, kernelFail(op, req.Program, fmt.Errorf("program %s is not loaded in %s (load the object first): %w", req.Program, req.PinDir, err))
	}
	defer prog.Close()
	if prog.Type() != ebpf.Tracing {
		return nil, failf(op, req.Program, codeBadRequest,
			"program %s is of type %s; run_iter needs an iterator (Tracing, SEC(\"iter/...\"))", req.Program, prog.Type())
	}
	// The link lives only for this run: nothing is pinned, closing it detaches it.
	iter, err := link.AttachIter(link.IterOptions{Program: prog})
	if err != nil {
		return nil, kernelFail(op, req.Program, fmt.Errorf("attach iterator %s: %w", req.Program, err))
	}
	defer iter.Close()

	var out []byte
	truncated := false
	run := func() error {
		reader, err := iter.Open()
		if err != nil {
			return fmt.Errorf("open iterator %s: %w", req.Program, err)
		}
		defer reader.Close()
		// Read one byte past the bound to know whether there was more.
		out, err = io.ReadAll(io.LimitReader(reader, int64(req.MaxBytes)+1))
		if err != nil {
			return fmt.Errorf("read iterator %s: %w", req.Program, err)
		}
		if len(out) > req.MaxBytes {
			out = out[:req.MaxBytes]
			truncated = true
		}
		return nil
	}
	if err := inNetns(req.Netns, run); err != nil {
		var oe *opError
		if errors.As(err, &oe) {
			return nil, err
		}
		return nil, kernelFail(op, req.Program, err)
	}
	return map[string]any{
		"program": req.Program, "netns": req.Netns,
		"bytes": len(out), "output": string(out), "truncated": truncated,
	}, nil
}
