package gateway

import (
	"encoding/binary"

	"golang.org/x/crypto/ssh"

	"tandem.dev/tandem/internal/session"
)

// ptyReq is the payload of a pty-req (RFC 4254 §6.2).
type ptyReq struct {
	Term          string
	Cols, Rows    uint32
	Width, Height uint32
	Modes         string
}

func parsePTY(pty *ssh.Request) (ptyReq, bool) {
	var req ptyReq
	return req, pty != nil && ssh.Unmarshal(pty.Payload, &req) == nil
}

// termSize is a client's window size as a terminal can hold it: struct
// winsize has 16 bits per dimension, and sshd stores the client's 32 by
// cutting off the top (65616 columns become 80). Larger values are
// taken as 65535, for the target and the recording alike, so that the
// recording never claims a size the target's terminal did not have.
func termSize(cols, rows uint32) session.Size {
	return session.Size{Cols: min(cols, 0xffff), Rows: min(rows, 0xffff)}
}

// ptyTerm reads TERM from a pty-req.
func ptyTerm(pty *ssh.Request) string {
	req, _ := parsePTY(pty)
	return req.Term
}

// ptySize reads the window size from a pty-req and a later window-change.
func ptySize(pty, winch *ssh.Request) session.Size {
	var sz session.Size
	if req, ok := parsePTY(pty); ok {
		sz = termSize(req.Cols, req.Rows)
	}
	if winch != nil {
		if w, ok := parseWinch(winch.Payload); ok {
			sz = w
		}
	}
	return sz
}

func parseWinch(p []byte) (session.Size, bool) {
	var w struct{ Cols, Rows, Width, Height uint32 }
	if ssh.Unmarshal(p, &w) != nil {
		return session.Size{}, false
	}
	return termSize(w.Cols, w.Rows), true
}

func winchPayload(sz session.Size) []byte {
	b := make([]byte, 16)
	binary.BigEndian.PutUint32(b[0:], sz.Cols)
	binary.BigEndian.PutUint32(b[4:], sz.Rows)
	return b
}

// withSize rewrites a pty-req to carry sz, keeping TERM and modes.
func withSize(pty *ssh.Request, sz session.Size) []byte {
	req, ok := parsePTY(pty)
	if !ok || sz.Cols == 0 {
		return pty.Payload
	}
	req.Cols, req.Rows, req.Width, req.Height = sz.Cols, sz.Rows, 0, 0
	return ssh.Marshal(req)
}
