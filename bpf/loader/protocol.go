// The wire protocol, version 1: one JSON object per line each way.
//
//	request:  {"v":1,"id":N,"op":"<op>", ...op fields}
//	response: {"v":1,"id":N,"ok":true, ...result fields}
//	          {"v":1,"id":N,"ok":false,"error":{"op","object","code","errno","message","verifierLog"}}
//
// A request that is not JSON gets "id":null and code "bad_json". Fields an op does not know
// are rejected (code "bad_request"), so a typo never silently means "default".
//
// Ops (request fields → result fields; the structs in load.go, attach.go, list.go say more):
//
//	hello                                   → protocol, ebpf, go, pid, ops
//	load   object, pinDir, maxEntries?      → object, pinDir, maps[], programs[]
//	attach pinDir, program, kind, link?,    → link, pin, target, replaced, unchanged
//	       tc: iface, netns?, direction; xdp: iface, netns?, xdpMode?;
//	       cgroup: cgroup, hook, allowCgroupRoot?
//	detach pinDir, link                     → link, detached
//	list   pinDir                           → pinDir, maps[], programs[], links[]
//	remove pinDir                           → pinDir, removed, detached
//	run_iter pinDir, program, netns?,       → program, netns, bytes, output, truncated
//	       maxBytes?
//
// agent/bpf/loader_client.ts mirrors this file; change both together and bump
// ProtocolVersion on any incompatible change.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// ProtocolVersion is the "v" of every message; a request with another version is refused.
const ProtocolVersion = 1

// verifierLogTailLines is how much of a verifier log an error carries: the end is where the
// kernel says what it rejected.
const verifierLogTailLines = 40

// envelope holds the fields every request has; the op's own fields are decoded separately.
type envelope struct {
	V  *int             `json:"v"`
	ID *json.RawMessage `json:"id"`
	Op string           `json:"op"`
}

// ErrorBody is the "error" object of a failed response.
type ErrorBody struct {
	Op          string `json:"op"`
	Object      string `json:"object,omitempty"`
	Code        string `json:"code"`
	Errno       string `json:"errno,omitempty"`
	Message     string `json:"message"`
	VerifierLog string `json:"verifierLog,omitempty"`
}

// opError is an error with the context a response needs; code is one of the codes below.
type opError struct {
	op     string
	object string
	code   string
	err    error
}

// Error codes: stable strings a client can switch on (errno says what the kernel said).
const (
	codeBadJSON    = "bad_json"     // the line is not a JSON object
	codeBadVersion = "bad_version"  // "v" is missing or not ProtocolVersion
	codeBadRequest = "bad_request"  // a field is missing, unknown or invalid
	codeUnknownOp  = "unknown_op"   // "op" names no operation
	codeNotFound   = "not_found"    // the object, pin, interface, netns or cgroup does not exist
	codeNotBpffs   = "not_bpffs"    // the pin dir is not on a bpf filesystem
	codeVerifier   = "verifier"     // the kernel verifier rejected a program
	codeIncompat   = "incompatible" // a pinned map differs from the object's definition
	codeConflict   = "conflict"     // a link pin of that name already attaches elsewhere
	codeKernel     = "kernel"       // any other failure of a kernel call
	codeInternal   = "internal"     // a bug in the loader (a recovered panic)
)

func (e *opError) Error() string { return e.err.Error() }
func (e *opError) Unwrap() error { return e.err }

func fail(op, object, code string, err error) error {
	return &opError{op: op, object: object, code: code, err: err}
}

func failf(op, object, code, format string, args ...any) error {
	return fail(op, object, code, fmt.Errorf(format, args...))
}

// kernelFail classifies an error from a kernel call: ENOENT becomes not_found, a verifier
// error becomes verifier, the rest kernel.
func kernelFail(op, object string, err error) error {
	var verr *ebpf.VerifierError
	switch {
	case errors.As(err, &verr):
		return fail(op, object, codeVerifier, err)
	case errors.Is(err, os.ErrNotExist):
		return fail(op, object, codeNotFound, err)
	default:
		return fail(op, object, codeKernel, err)
	}
}

// errorBody turns any error into the wire form, finding the errno and verifier log inside.
func errorBody(op string, err error) ErrorBody {
	body := ErrorBody{Op: op, Code: codeKernel, Message: err.Error()}
	var oe *opError
	if errors.As(err, &oe) {
		body.Op, body.Object, body.Code = oe.op, oe.object, oe.code
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			body.Errno = name
		} else {
			body.Errno = fmt.Sprintf("errno %d", int(errno))
		}
	}
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		log := verr.Log
		if len(log) > verifierLogTailLines {
			log = log[len(log)-verifierLogTailLines:]
		}
		body.VerifierLog = strings.Join(log, "\n")
	}
	return body
}

// response is built as a map so each op returns its own fields beside the common ones.
func okResponse(id json.RawMessage, result map[string]any) map[string]any {
	out := map[string]any{"v": ProtocolVersion, "id": id, "ok": true}
	for k, v := range result {
		out[k] = v
	}
	return out
}

func errorResponse(id json.RawMessage, body ErrorBody) map[string]any {
	return map[string]any{"v": ProtocolVersion, "id": id, "ok": false, "error": body}
}

// decodeStrict decodes an op's fields, refusing unknown ones (the envelope's are allowed).
func decodeStrict(op string, line []byte, into any) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(line, &raw); err != nil {
		return failf(op, "", codeBadJSON, "request is not a JSON object: %v", err)
	}
	delete(raw, "v")
	delete(raw, "id")
	delete(raw, "op")
	rest, _ := json.Marshal(raw)
	decoder := json.NewDecoder(bytes.NewReader(rest))
	decoder.DisallowUnknownFields()
	if err := decoder.Decode(into); err != nil {
		return failf(op, "", codeBadRequest, "bad %q request: %v", op, err)
	}
	return nil
}

// handler runs one op on its raw request line and returns the result fields.
type handler func(op string, line []byte) (map[string]any, error)

var handlers map[string]handler

// init fills handlers (a plain initializer would be a cycle: hello lists the ops).
func init() {
	handlers = map[string]handler{
		"hello":    opHello,
		"load":     opLoad,
		"attach":   opAttach,
		"detach":   opDetach,
		"list":     opList,
		"remove":   opRemove,
		"run_iter": opRunIter,
	}
}

// handleLine answers one request line; it never panics (a panic becomes code "internal").
func handleLine(line []byte) (response map[string]any) {
	id := json.RawMessage("null")
	op := ""
	defer func() {
		if r := recover(); r != nil {
			response = errorResponse(id, ErrorBody{
				Op: op, Code: codeInternal, Message: fmt.Sprintf("loader bug: %v", r),
			})
			fmt.Fprintf(os.Stderr, "skiff-loader: panic in %q: %v\n%s", op, r, debug.Stack())
		}
	}()
	var env envelope
	if err := json.Unmarshal(line, &env); err != nil {
		return errorResponse(id, ErrorBody{
			Code: codeBadJSON, Message: fmt.Sprintf("request is not a JSON object: %v", err),
		})
	}
	if env.ID != nil {
		id = *env.ID
	}
	op = env.Op
	if env.V == nil || *env.V != ProtocolVersion {
		got := "missing"
		if env.V != nil {
			got = fmt.Sprint(*env.V)
		}
		return errorResponse(id, ErrorBody{
			Op: op, Code: codeBadVersion,
			Message: fmt.Sprintf("protocol version %s is not supported; this loader speaks v%d", got, ProtocolVersion),
		})
	}
	h, ok := handlers[op]
	if !ok {
		known := make([]string, 0, len(handlers))
		for name := range handlers {
			known = append(known, name)
		}
		return errorResponse(id, ErrorBody{
			Op: op, Code: codeUnknownOp,
			Message: fmt.Sprintf("unknown op %q (known: %s)", op, strings.Join(sortedStrings(known), ", ")),
		})
	}
	result, err := h(op, line)
	if err != nil {
		return errorResponse(id, errorBody(op, err))
	}
	return okResponse(id, result)
}

func sortedStrings(in []string) []string {
	sort.Strings(in)
	return in
}

// opHello reports the protocol and library versions.
func opHello(op string, line []byte) (map[string]any, error) {
	var req struct{}
	if err := decodeStrict(op, line, &req); err != nil {
		return nil, err
	}
	ebpfVersion := "unknown"
	goVersion := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		goVersion = info.GoVersion
		for _, dep := range info.Deps {
			if dep.Path == "github.com/cilium/ebpf" {
				ebpfVersion = dep.Version
			}
		}
	}
	return map[string]any{
		"protocol": ProtocolVersion,
		"ebpf":     ebpfVersion,
		"go":       goVersion,
		"pid":      os.Getpid(),
		"ops":      sortedStrings(keys(handlers)),
	}, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
