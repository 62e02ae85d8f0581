package demotarget

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// maxProcScan bounds the /proc scan (pid_max is at most 2^22 on Linux).
const maxProcScan = 1 << 22

// killSession kills every process of the session that leader started
// (each session program runs under setsid, so its session id is its pid):
// first the leader's process group, then, where /proc exists, every other
// process of the session. A job that an interactive shell put into the
// background has a process group of its own and would otherwise outlive
// the session, holding the terminal open.
//
// It must only be called while leader has not been reaped: until then its
// pid, and with it the session id, cannot be reused by another process.
func killSession(leader int) error {
	err := syscall.Kill(-leader, syscall.SIGKILL)
	ents, rerr := os.ReadDir("/proc")
	if rerr != nil {
		return err // not Linux, or no /proc: the process group is all we can do
	}
	for i, e := range ents {
		if i >= maxProcScan {
			break
		}
		pid, perr := strconv.Atoi(e.Name())
		if perr != nil || pid <= 0 || pid == leader {
			continue
		}
		stat, serr := os.ReadFile("/proc/" + e.Name() + "/stat")
		if serr != nil {
			continue // gone meanwhile, or not ours to read
		}
		if sid, ok := sessionOf(stat); ok && sid == leader {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return err
}

// sessionOf returns the session id field of a /proc/PID/stat line:
// "pid (comm) state ppid pgrp session ...". comm may itself contain spaces
// and parentheses, so the fields are counted after the last ')'.
func sessionOf(stat []byte) (int, bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 4 {
		return 0, false
	}
	sid, err := strconv.Atoi(string(f[3]))
	if err != nil {
		return 0, false
	}
	return sid, true
}
