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

// ptyTerm reads TERM from a pty-req.
func ptyTerm(pty *ssh.Request) string {
	req, _ := parsePTY(pty)
	return req.Term
}

// ptySize reads the window size from a pty-req and a later window-change.
func ptySize(pty, winch *ssh.Request) session.Size {
	var sz session.Size
	if req, ok := parsePTY(pty); ok {
		sz = session.Size{Cols: req.Cols, Rows: req.Rows}
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
	return session.Size{Cols: w.Cols, Rows: w.Rows}, true
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
