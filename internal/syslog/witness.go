package syslog

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
)

// maxLine bounds one line of a collector's file: a record is at most
// audit.MaxRecordSize, plus its header and structured data.
const maxLine = 4 << 20

// Checkpoints returns the signed checkpoints found in a collector's log
// file, in the order they were received and each once (delivery is at
// least once). The file holds one message per line, as rsyslog writes
// them; only the checkpoint element and the MSG after it are read, so any
// template that keeps structured data and message works.
func Checkpoints(r io.Reader) ([][]byte, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	seen := map[string]bool{}
	var out [][]byte
	for n := 1; sc.Scan(); n++ {
		note, ok, err := checkpointOf(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if ok && !seen[string(note)] {
			seen[string(note)] = true
			out = append(out, note)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read collector file: %w", err)
	}
	return out, nil
}

// checkpointOf returns the checkpoint note a line carries, if it is a
// checkpoint message.
func checkpointOf(line []byte) ([]byte, bool, error) {
	i := bytes.Index(line, []byte("["+sdCheckpoint+" "))
	if i < 0 {
		return nil, false, nil
	}
	// A record's own element comes before its MSG, which is the record as
	// stored: in a log from before format v2 it holds command lines and
	// reasons in clear, and text there is no checkpoint.
	if r := bytes.Index(line, []byte("["+sdAudit+" ")); r >= 0 && r < i {
		return nil, false, nil
	}
	end := elementEnd(line[i:])
	if end < 0 {
		return nil, false, fmt.Errorf("unterminated %s element", sdCheckpoint)
	}
	msg := bytes.TrimSpace(line[i+end+1:])
	note, err := base64.StdEncoding.DecodeString(string(msg))
	if err != nil {
		return nil, false, fmt.Errorf("checkpoint message: %w", err)
	}
	return note, true, nil
}

// elementEnd returns the index of the "]" that closes the SD element b
// starts with, or -1: a "]" inside a quoted value is escaped or quoted.
func elementEnd(b []byte) int {
	quoted := false
	for i := 0; i < len(b); i++ {
		switch c := b[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == ']':
			return i
		}
	}
	return -1
}
