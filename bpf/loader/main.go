// Command skiff-loader loads, pins and attaches skiff's BPF objects for the agent. It reads one
// JSON request per line on stdin and writes one JSON response per line on stdout (protocol.go),
// handles requests one at a time, and exits 0 on stdin EOF. Everything it creates is pinned in
// bpffs, so it survives this process: the agent may run it once per change or keep it running.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(serve(os.Stdin, os.Stdout))
}

// serve answers requests until EOF; the exit code is non-zero only when stdout breaks.
func serve(in io.Reader, out io.Writer) int {
	reader := bufio.NewReaderSize(in, 64*1024)
	writer := bufio.NewWriter(out)
	encoder := json.NewEncoder(writer)
	encoder.SetEscapeHTML(false)
	for {
		line, readErr := reader.ReadBytes('\n')
		if len(trimSpace(line)) > 0 {
			if err := encoder.Encode(handleLine(line)); err != nil {
				fmt.Fprintf(os.Stderr, "skiff-loader: write response: %v\n", err)
				return 1
			}
			if err := writer.Flush(); err != nil {
				fmt.Fprintf(os.Stderr, "skiff-loader: write response: %v\n", err)
				return 1
			}
		}
		if readErr == io.EOF {
			return 0
		}
		if readErr != nil {
			fmt.Fprintf(os.Stderr, "skiff-loader: read request: %v\n", readErr)
			return 1
		}
	}
}

func trimSpace(b []byte) []byte {
	start, end := 0, len(b)
	for start < end && (b[start] == ' ' || b[start] == '\t' || b[start] == '\r' || b[start] == '\n') {
		start++
	}
	for end > start && (b[end-1] == ' ' || b[end-1] == '\t' || b[end-1] == '\r' || b[end-1] == '\n') {
		end--
	}
	return b[start:end]
}
