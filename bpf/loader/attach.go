// The "attach" and "detach" ops: pinned bpf_links for tc (tcx), cgroup v2 socket hooks and XDP.
//
// tc uses tcx links (link.AttachTCX, kernel ≥ 6.6) rather than a clsact qdisc + netlink
// filter: a tcx link is a bpf_link, so it is pinned in bpffs and survives the loader, it is
// owned (another tool's "tc filter replace" cannot silently swap it), it detaches exactly by
// unpinning, several programs chain on one hook in a defined order (TCX_NEXT), and there is no
// qdisc or filter priority/handle to manage or leak. (bpftool 7.1 does not show tcx links;
// the "list" op does.)
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

type attachRequest struct {
	PinDir string `json:"pinDir"`
	// Program is the name of a program pinned by "load" under progs/.
	Program string `json:"program"`
	// Kind is "tc", "cgroup" or "xdp".
	Kind string `json:"kind"`
	// Link names the link pin under links/; default "<program>-<kind>-<hook>-<target>".
	Link string `json:"link,omitempty"`
	// Iface (tc, xdp) is an interface name inside Netns.
	Iface string `json:"iface,omitempty"`
	// Netns (tc, xdp) is a netns path such as /run/netns/NAME; default the loader's own.
	Netns string `json:"netns,omitempty"`
	// Direction (tc) is "ingress" or "egress".
	Direction string `json:"direction,omitempty"`
	// XDPMode (xdp) is "generic", "driver" or "" (let the kernel pick).
	XDPMode string `json:"xdpMode,omitempty"`
	// Cgroup (cgroup) is a cgroup v2 directory.
	Cgroup string `json:"cgroup,omitempty"`
	// Hook (cgroup) is "connect4", "sendmsg4", "recvmsg4" or "getpeername4".
	Hook string `json:"hook,omitempty"`
	// AllowCgroupRoot permits attaching to a cgroup2 mount root, which catches every process
	// on the machine. Default false: a mistake there breaks the whole host.
	AllowCgroupRoot bool `json:"allowCgroupRoot,omitempty"`
}

var tcDirections = map[string]ebpf.AttachType{
	"ingress": ebpf.AttachTCXIngress,
	"egress":  ebpf.AttachTCXEgress,
}

var cgroupHooks = map[string]ebpf.AttachType{
	"connect4":     ebpf.AttachCGroupInet4Connect,
	"sendmsg4":     ebpf.AttachCGroupUDP4Sendmsg,
	"recvmsg4":     ebpf.AttachCGroupUDP4Recvmsg,
	"getpeername4": ebpf.AttachCgroupInet4GetPeername,
}

// kindProgramTypes is the program type each kind of hook takes.
var kindProgramTypes = map[string]ebpf.ProgramType{
	"tc":     ebpf.SchedCLS,
	"xdp":    ebpf.XDP,
	"cgroup": ebpf.CGroupSockAddr,
}

var xdpModes = map[string]link.XDPAttachFlags{
	"":        0,
	"generic": link.XDPGenericMode,
	"driver":  link.XDPDriverMode,
}

func enumKeys[V any](m map[string]V) string {
	names := keys(m)
	sortedStrings(names)
	return strings.Join(names, ", ")
}

// validate checks the fields for the kind and fills in the default link name.
func (r *attachRequest) validate(op string) error {
	if err := checkPinName(op, "program", r.Program); err != nil {
		return err
	}
	var hook, target string
	switch r.Kind {
	case "tc":
		if _, ok := tcDirections[r.Direction]; !ok {
			return failf(op, r.Direction, codeBadRequest, "direction %q must be one of: %s", r.Direction, enumKeys(tcDirections))
		}
		if r.Iface == "" {
			return failf(op, "", codeBadRequest, "iface is required for kind tc")
		}
		if r.Cgroup != "" || r.Hook != "" || r.XDPMode != "" {
			return failf(op, "", codeBadRequest, "kind tc takes iface, netns and direction (not cgroup, hook, xdpMode)")
		}
		hook, target = r.Direction, r.Iface
	case "xdp":
		if _, ok := xdpModes[r.XDPMode]; !ok {
			return failf(op, r.XDPMode, codeBadRequest, "xdpMode %q must be one of: generic, driver (or empty)", r.XDPMode)
		}
		if r.Iface == "" {
			return failf(op, "", codeBadRequest, "iface is required for kind xdp")
		}
		if r.Cgroup != "" || r.Hook != "" || r.Direction != "" {
			return failf(op, "", codeBadRequest, "kind xdp takes iface, netns and xdpMode (not cgroup, hook, direction)")
		}
		hook, target = "xdp", r.Iface
	case "cgroup":
		if _, ok := cgroupHooks[r.Hook]; !ok {
			return failf(op, r.Hook, codeBadRequest, "hook %q must be one of: %s", r.Hook, enumKeys(cgroupHooks))
		}
		if r.Cgroup == "" || !filepath.IsAbs(r.Cgroup) {
			return failf(op, r.Cgroup, codeBadRequest, "cgroup must be an absolute cgroup v2 directory")
		}
		if r.Iface != "" || r.Netns != "" || r.Direction != "" || r.XDPMode != "" {
			return failf(op, "", codeBadRequest, "kind cgroup takes cgroup and hook (not iface, netns, direction, xdpMode)")
		}
		hook, target = r.Hook, filepath.Base(r.Cgroup)
	default:
		return failf(op, r.Kind, codeBadRequest, "kind %q must be one of: cgroup, tc, xdp", r.Kind)
	}
	if r.Link == "" {
		r.Link = strings.ReplaceAll(fmt.Sprintf("%s-%s-%s-%s", r.Program, r.Kind, hook, target), ".", "_")
		if r.Netns != "" {
			r.Link += "@" + strings.ReplaceAll(filepath.Base(r.Netns), ".", "_")
		}
	}
	return checkPinName(op, "link", r.Link)
}

// isCgroupRoot is true when dir is the root of a cgroup2 mount (its parent is another fs).
func isCgroupRoot(dir string) (bool, error) {
	var fs, parent unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		return false, fmt.Errorf("cgroup %s: %w", dir, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return false, fmt.Errorf("%s is not a cgroup v2 directory: %w", dir, unix.ENOTDIR)
	}
	if err := unix.Statfs(filepath.Dir(dir), &parent); err != nil {
		return false, fmt.Errorf("cgroup parent of %s: %w", dir, err)
	}
	return parent.Type != unix.CGROUP2_SUPER_MAGIC, nil
}

// targetOf describes where an existing link attaches, in the terms of "list".
func targetOf(l link.Link) (linkTarget, error) {
	info, err := l.Info()
	if err != nil {
		return linkTarget{}, err
	}
	t := linkTarget{ProgramID: uint32(info.Program), LinkID: uint32(info.ID)}
	switch info.Type {
	case link.TCXType:
		t.Kind = "tc"
		if tcx := info.TCX(); tcx != nil {
			t.Ifindex = tcx.Ifindex
			t.Direction = "ingress"
			if ebpf.AttachType(tcx.AttachType) == ebpf.AttachTCXEgress {
				t.Direction = "egress"
			}
		}
	case link.XDPType:
		t.Kind = "xdp"
		if xdp := info.XDP(); xdp != nil {
			t.Ifindex = xdp.Ifindex
		}
	case link.CgroupType:
		t.Kind = "cgroup"
		if cg := info.Cgroup(); cg != nil {
			t.CgroupID = cg.CgroupId
			for name, at := range cgroupHooks {
				if ebpf.AttachType(cg.AttachType) == at {
					t.Hook = name
				}
			}
		}
	default:
		t.Kind = fmt.Sprintf("link type %d", info.Type)
	}
	if prog, err := ebpf.NewProgramFromID(info.Program); err == nil {
		if pinfo, err := prog.Info(); err == nil {
			t.ProgramName = pinfo.Name
		}
		prog.Close()
	}
	return t, nil
}

func opAttach(op string, line []byte) (map[string]any, error) {
	var req attachRequest
	if err := decodeStrict(op, line, &req); err != nil {
		return nil, err
	}
	if err := req.validate(op); err != nil {
		return nil, err
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
	progInfo, err := prog.Info()
	if err != nil {
		return nil, kernelFail(op, req.Program, fmt.Errorf("program info: %w", err))
	}
	progID, _ := progInfo.ID()
	if want := kindProgramTypes[req.Kind]; prog.Type() != want {
		return nil, failf(op, req.Program, codeBadRequest,
			"program %s is of type %s; kind %s needs %s (check its SEC())", req.Program, prog.Type(), req.Kind, want)
	}
	linkPin := filepath.Join(req.PinDir, linksSubdir, req.Link)

	var attached link.Link
	var replaced, unchanged bool
	var ifidx int
	attach := func() error {
		if req.Kind == "tc" || req.Kind == "xdp" {
			idx, err := ifindex(req.Iface)
			if err != nil {
				return err
			}
			ifidx = idx
		}
		if existing, err := link.LoadPinnedLink(linkPin, nil); err == nil {
			// Converge: a link of that name exists. Same target → swap its program in place
			// (atomic for the traffic) or leave it when it already runs this program.
			t, err := targetOf(existing)
			if err != nil {
				existing.Close()
				return err
			}
			if err := sameTarget(req, t, ifidx); err != nil {
				existing.Close()
				return err
			}
			if t.ProgramID == uint32(progID) {
				unchanged = true
			} else if err := existing.Update(prog); err != nil {
				existing.Close()
				return fmt.Errorf("replace program of link %s: %w", req.Link, err)
			} else {
				replaced = true
			}
			attached = existing
			return nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("open link pin %s: %w", linkPin, err)
		}
		var err error
		switch req.Kind {
		case "tc":
			attached, err = link.AttachTCX(link.TCXOptions{
				Interface: ifidx, Program: prog, Attach: tcDirections[req.Direction],
			})
		case "xdp":
			attached, err = link.AttachXDP(link.XDPOptions{
				Interface: ifidx, Program: prog, Flags: xdpModes[req.XDPMode],
			})
		case "cgroup":
			root, rerr := isCgroupRoot(req.Cgroup)
			if rerr != nil {
				return rerr
			}
			if root && !req.AllowCgroupRoot {
				return fail(op, req.Cgroup, codeBadRequest, fmt.Errorf(
					"%s is a cgroup2 mount root: a hook there catches every process on the machine (set allowCgroupRoot to mean it)", req.Cgroup))
			}
			attached, err = link.AttachCgroup(link.CgroupOptions{
				Path: req.Cgroup, Program: prog, Attach: cgroupHooks[req.Hook],
			})
		}
		if err != nil {
			return fmt.Errorf("attach %s to %s %s: %w", req.Program, req.Kind, describeTarget(req), err)
		}
		if err := attached.Pin(linkPin); err != nil {
			// An unpinned link would detach when we close it: undo rather than half-attach.
			attached.Close()
			attached = nil
			return fmt.Errorf("pin link %s: %w", linkPin, err)
		}
		return nil
	}
	if err := inNetns(req.Netns, attach); err != nil {
		var oe *opError
		if errors.As(err, &oe) {
			return nil, err
		}
		if errors.Is(err, unix.ENODEV) {
			return nil, fail(op, req.Iface, codeNotFound, err)
		}
		return nil, kernelFail(op, describeTarget(req), err)
	}
	defer attached.Close()
	t, err := targetOf(attached)
	if err != nil {
		return nil, kernelFail(op, req.Link, err)
	}
	return map[string]any{
		"link": req.Link, "pin": linkPin, "target": t,
		"replaced": replaced, "unchanged": unchanged,
	}, nil
}

func describeTarget(r attachRequest) string {
	switch r.Kind {
	case "cgroup":
		return r.Cgroup
	default:
		if r.Netns != "" {
			return r.Iface + "@" + r.Netns
		}
		return r.Iface
	}
}

// sameTarget refuses to reuse a link name for a different hook.
func sameTarget(r attachRequest, t linkTarget, ifidx int) error {
	ok := t.Kind == r.Kind
	switch r.Kind {
	case "tc":
		ok = ok && t.Ifindex == uint32(ifidx) && t.Direction == r.Direction
	case "xdp":
		ok = ok && t.Ifindex == uint32(ifidx)
	case "cgroup":
		ok = ok && t.Hook == r.Hook
	}
	if !ok {
		return fail("attach", r.Link, codeConflict, fmt.Errorf(
			"link %q already attaches %s (ifindex %d %s%s) : detach it first or pick another link name: %w",
			r.Link, t.Kind, t.Ifindex, t.Direction, t.Hook, unix.EEXIST))
	}
	return nil
}

type detachRequest struct {
	PinDir string `json:"pinDir"`
	// Link is the link's pin name under links/ (as "attach" returned it).
	Link string `json:"link"`
}

func opDetach(op string, line []byte) (map[string]any, error) {
	var req detachRequest
	if err := decodeStrict(op, line, &req); err != nil {
		return nil, err
	}
	if err := checkPinName(op, "link", req.Link); err != nil {
		return nil, err
	}
	if err := checkPinDir(op, req.PinDir, false); err != nil {
		return nil, err
	}
	pin := filepath.Join(req.PinDir, linksSubdir, req.Link)
	detached, err := detachPinned(pin)
	if err != nil {
		return nil, kernelFail(op, req.Link, err)
	}
	// Like CNI DEL: detaching what is not there is success, reported as detached=false.
	return map[string]any{"link": req.Link, "detached": detached}, nil
}

// detachPinned detaches the link pinned at path (even if another fd still holds it), then
// unpins and closes it. A missing pin is not an error: it returns false.
func detachPinned(path string) (bool, error) {
	l, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open link %s: %w", path, err)
	}
	defer l.Close()
	if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
		return false, fmt.Errorf("detach link %s: %w", path, err)
	}
	if err := l.Unpin(); err != nil {
		return false, fmt.Errorf("unpin link %s: %w", path, err)
	}
	return true, nil
}
