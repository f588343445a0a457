// The pin dir layout, /sys/fs/bpf/skiff/<instance>/:
//
//	<map name>          maps, pinned by name (PinByName): reused by every later load
//	progs/<program>     programs of the last load
//	links/<link name>   tcx, cgroup and XDP links: they keep the program attached after the
//	                    loader exits, and unpinning + closing one detaches it
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"golang.org/x/sys/unix"
)

const (
	progsSubdir = "progs"
	linksSubdir = "links"
)

// pinNameRe is what a map, program or link pin may be called: no path separators and no
// dots (bpffs refuses names with a dot: EPERM).
var pinNameRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_@:-]{0,127}$`)

// checkPinDir validates a pin dir and, with create, makes it (and progs/, links/). The dir
// must be absolute and on bpffs: the nearest existing ancestor is checked before anything is
// created, so a wrong path never leaves directories outside bpffs.
func checkPinDir(op, dir string, create bool) error {
	if dir == "" {
		return failf(op, "", codeBadRequest, "pinDir is required")
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return failf(op, dir, codeBadRequest, "pinDir %q must be an absolute, clean path", dir)
	}
	existing := dir
	for {
		if _, err := os.Stat(existing); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return kernelFail(op, dir, fmt.Errorf("stat %s: %w", existing, err))
		}
		existing = filepath.Dir(existing)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(existing, &fs); err != nil {
		return kernelFail(op, dir, fmt.Errorf("statfs %s: %w", existing, err))
	}
	if fs.Type != unix.BPF_FS_MAGIC {
		return failf(op, dir, codeNotBpffs,
			"pinDir %s is not on a bpf filesystem (%s is not bpffs; mount one with `mount -t bpf bpf /sys/fs/bpf`)",
			dir, existing)
	}
	if !create {
		if existing != dir {
			return failf(op, dir, codeNotFound, "pinDir %s does not exist: %w", dir, os.ErrNotExist)
		}
		return nil
	}
	for _, d := range []string{dir, filepath.Join(dir, progsSubdir), filepath.Join(dir, linksSubdir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return kernelFail(op, dir, fmt.Errorf("create %s: %w", d, err))
		}
	}
	return nil
}

func checkPinName(op, field, name string) error {
	if !pinNameRe.MatchString(name) {
		return failf(op, name, codeBadRequest, "%s %q is not a valid pin name (letters, digits, _ @ : -; at most 128)", field, name)
	}
	return nil
}

// replacePin pins through pin(tmp) then renames over path: a reader sees the old or the new
// object, never none (bpffs supports rename).
func replacePin(path string, pin func(string) error) error {
	tmp := filepath.Join(filepath.Dir(path), "__new__"+filepath.Base(path))
	_ = os.Remove(tmp)
	if err := pin(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("rename pin to %s: %w", path, err)
	}
	return nil
}
