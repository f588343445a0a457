// libcni-driver drives a conflist through libcni (github.com/containernetworking/cni/libcni),
// the runtime library containerd and CRI-O use, so skiff's conflist and plugin are exercised
// the way a real runtime calls them. Usage:
//
//	libcni-driver -conflist F -bin-dir D -netns P -id ID [-ifname eth0] [-port H:C] [-cache-dir D] ADD|CHECK|DEL|STATUS|GC...
//
// Each verb runs in order; ADD prints the result JSON on stdout. GC keeps only this attachment.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func main() {
	conflist := flag.String("conflist", "", "conflist file")
	binDir := flag.String("bin-dir", "", "CNI bin dir")
	netns := flag.String("netns", "", "Pod netns path")
	id := flag.String("id", "", "container id")
	ifname := flag.String("ifname", "eth0", "interface name")
	cacheDir := flag.String("cache-dir", "", "libcni result cache dir")
	hostPort := flag.Int("host-port", 0, "hostPort to map (0: none)")
	containerPort := flag.Int("container-port", 80, "containerPort of the mapping")
	flag.Parse()

	list, err := libcni.ConfListFromFile(*conflist)
	if err != nil {
		fail("load conflist", err)
	}
	cni := libcni.NewCNIConfigWithCacheDir([]string{*binDir}, *cacheDir, nil)
	rt := &libcni.RuntimeConf{ContainerID: *id, NetNS: *netns, IfName: *ifname}
	if *hostPort != 0 {
		rt.CapabilityArgs = map[string]interface{}{
			"portMappings": []map[string]interface{}{
				{"hostPort": *hostPort, "containerPort": *containerPort, "protocol": "tcp"},
			},
		}
	}
	ctx := context.Background()
	for _, verb := range flag.Args() {
		switch verb {
		case "ADD":
			res, err := cni.AddNetworkList(ctx, list, rt)
			if err != nil {
				fail("ADD", err)
			}
			if err := res.Print(); err != nil {
				fail("print", err)
			}
			fmt.Println()
		case "CHECK":
			if err := cni.CheckNetworkList(ctx, list, rt); err != nil {
				fail("CHECK", err)
			}
		case "DEL":
			if err := cni.DelNetworkList(ctx, list, rt); err != nil {
				fail("DEL", err)
			}
		case "STATUS":
			if err := cni.GetStatusNetworkList(ctx, list); err != nil {
				fail("STATUS", err)
			}
		case "GC":
			args := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{
				{ContainerID: *id, IfName: *ifname},
			}}
			if err := cni.GCNetworkList(ctx, list, args); err != nil {
				fail("GC", err)
			}
		default:
			fail("verb", fmt.Errorf("unknown verb %q", verb))
		}
	}
}

func fail(what string, err error) {
	report := map[string]interface{}{"step": what, "error": err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		report["code"] = cniErr.Code
	}
	out, _ := json.Marshal(report)
	fmt.Fprintln(os.Stderr, string(out))
	os.Exit(1)
}
