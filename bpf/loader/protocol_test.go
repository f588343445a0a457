package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// decode runs one line through handleLine and re-reads the response as a client would.
func decode(t *testing.T, line string) map[string]any {
	t.Helper()
	raw, err := json.Marshal(handleLine([]byte(line)))
	if err != nil {
		t.Fatalf("marshal response: %v", err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("unmarshal response: %v", err)
	}
	return out
}

func errorCode(resp map[string]any) string {
	e, _ := resp["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

func TestPanicInHandlerBecomesInternalError(t *testing.T) {
	handlers["boom"] = func(string, []byte) (map[string]any, error) { panic("kaboom") }
	defer delete(handlers, "boom")
	resp := decode(t, `{"v":1,"id":9,"op":"boom"}`)
	if resp["ok"] != false || errorCode(resp) != codeInternal || resp["id"] != float64(9) {
		t.Fatalf("want internal error for id 9, got %v", resp)
	}
	msg := resp["error"].(map[string]any)["message"].(string)
	if !strings.Contains(msg, "kaboom") || strings.Contains(msg, "goroutine") {
		t.Fatalf("message should name the panic without a stack trace: %q", msg)
	}
}

func TestUnknownFieldIsABadRequest(t *testing.T) {
	resp := decode(t, `{"v":1,"id":1,"op":"list","pinDir":"/sys/fs/bpf","pindir":"x"}`)
	if errorCode(resp) != codeBadRequest {
		t.Fatalf("want bad_request, got %v", resp)
	}
}

func TestBadJSONAnswersWithNullID(t *testing.T) {
	resp := decode(t, `{"v":1,"id":`)
	if errorCode(resp) != codeBadJSON || resp["id"] != nil {
		t.Fatalf("want bad_json with id null, got %v", resp)
	}
}

func TestServeAnswersEachLineAndStopsAtEOF(t *testing.T) {
	in := strings.NewReader("{\"v\":1,\"id\":1,\"op\":\"hello\"}\n\n{\"v\":1,\"id\":2,\"op\":\"nope\"}")
	var out bytes.Buffer
	if code := serve(in, &out); code != 0 {
		t.Fatalf("serve exit code %d", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 responses (blank line skipped, last line without newline answered), got %q", out.String())
	}
}

func TestPinNames(t *testing.T) {
	for _, ok := range []string{"count_ingress", "count_ingress-tc-ingress-eth0@skab12n1"} {
		if err := checkPinName("t", "link", ok); err != nil {
			t.Errorf("%q should be valid: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "../x", "has.dot", strings.Repeat("x", 200)} {
		if err := checkPinName("t", "link", bad); err == nil {
			t.Errorf("%q should be refused", bad)
		}
	}
}

func TestRunIterRefusesBadFieldsBeforeTouchingTheKernel(t *testing.T) {
	for _, line := range []string{
		`{"v":1,"id":1,"op":"run_iter","pinDir":"/sys/fs/bpf","program":"p","maxBytes":-1}`,
		`{"v":1,"id":1,"op":"run_iter","pinDir":"/sys/fs/bpf","program":"p","netns":"run/netns/x"}`,
		`{"v":1,"id":1,"op":"run_iter","pinDir":"/sys/fs/bpf","program":"a/b"}`,
		`{"v":1,"id":1,"op":"run_iter","pinDir":"/sys/fs/bpf","program":"p","iface":"eth0"}`,
	} {
		if resp := decode(t, line); errorCode(resp) != codeBadRequest {
			t.Errorf("%s: want bad_request, got %v", line, resp)
		}
	}
}
