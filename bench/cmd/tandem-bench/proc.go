package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs tracks every background process the benchmark starts (the two
// sshds, the gateway, the clients of idle sessions), so that each one is
// stopped by its PID at the end, also after an error or an interrupt.
type procs struct {
	mu   sync.Mutex
	list []*proc
}

// proc is one started background process and the channel that reports
// its exit, so that a stop and an early death are both observable without
// racing on cmd.Wait.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed
	once sync.Once
}

// start starts cmd in its own process group (so a terminal's Ctrl-C
// reaches only this program, which then stops everything in order) and
// tracks it.
func (r *procs) start(name string, cmd *exec.Cmd) (*proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	r.mu.Lock()
	r.list = append(r.list, p)
	r.mu.Unlock()
	return p, nil
}

// pid returns the process id.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig to the process's group; its id is the PID we started,
// so this reaches the process and children it did not move elsewhere (an
// ssh ProxyJump helper), never anything else.
func (p *proc) signal(sig syscall.Signal) {
	if !p.exited() {
		_ = syscall.Kill(-p.pid(), sig)
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILL and waits again
// (bounded). It is idempotent.
func (p *proc) stop(grace time.Duration) error {
	var result error
	p.once.Do(func() {
		if p.exited() {
			return
		}
		p.signal(syscall.SIGTERM)
		select {
		case <-p.done:
			return
		case <-time.After(grace):
		}
		p.signal(syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			result = fmt.Errorf("%s (pid %d) did not end after SIGKILL", p.name, p.pid())
		}
	})
	return result
}

// stopMany stops many processes at once: SIGTERM to all, one shared wait
// of at most grace, SIGKILL to the rest. Used for the hundreds of clients
// of the idle-session test, which one by one would take minutes.
func stopMany(ps []*proc, grace time.Duration) error {
	for _, p := range ps {
		p.signal(syscall.SIGTERM)
	}
	deadline := time.After(grace)
	var left []*proc
wait:
	for i, p := range ps {
		select {
		case <-p.done:
		case <-deadline:
			left = ps[i:]
			break wait
		}
	}
	var errs []string
	for _, p := range left {
		if err := p.stop(0); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, p := range ps {
		p.once.Do(func() {}) // already stopped: later stop calls do nothing
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d processes did not end: %s", len(errs), strings.Join(errs, "; "))
	}
	return nil
}

// stopAll stops every tracked process, newest first: clients before the
// gateway before the sshds, so that each server sees its clients leave.
func (r *procs) stopAll() []error {
	r.mu.Lock()
	list := r.list
	r.list = nil
	r.mu.Unlock()
	var errs []error
	var pending []*proc
	for i := len(list) - 1; i >= 0; i-- {
		if !list[i].exited() {
			pending = append(pending, list[i])
		}
	}
	// Clients first, all at once; the servers one by one after them.
	var clients, servers []*proc
	for _, p := range pending {
		if strings.HasPrefix(p.name, "ssh ") {
			clients = append(clients, p)
		} else {
			servers = append(servers, p)
		}
	}
	if err := stopMany(clients, 10*time.Second); err != nil {
		errs = append(errs, err)
	}
	for _, p := range servers {
		if strings.HasPrefix(p.name, "sshd") {
			stopChildren(p.pid(), 10*time.Second)
		}
		if err := p.stop(5 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// forget drops stopped processes from the list, so that a run with
// thousands of short-lived clients does not keep them all.
func (r *procs) forget(done []*proc) {
	gone := make(map[*proc]bool, len(done))
	for _, p := range done {
		gone[p] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	kept := r.list[:0]
	for _, p := range r.list {
		if !gone[p] {
			kept = append(kept, p)
		}
	}
	r.list = kept
}

// stopChildren ends the per-connection children of an sshd listener. They
// call setsid(), so they are outside its process group and would outlive
// it; normally they end by themselves once their clients are gone, so
// this waits for that first (bounded) and then sends SIGTERM to each one
// still there, by PID.
func stopChildren(parent int, wait time.Duration) {
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		if len(childrenOf(parent)) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, pid := range childrenOf(parent) {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
}

// childrenOf lists the processes whose parent is pid, from /proc.
func childrenOf(parent int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		if ppid, ok := statField(string(b), 4); ok && ppid == strconv.Itoa(parent) {
			out = append(out, pid)
		}
	}
	return out
}

// statField returns field n (1-based, as in proc(5)) of a /proc/PID/stat
// line. The command name (field 2) may hold blanks and parentheses, so
// fields are counted from its closing parenthesis.
func statField(stat string, n int) (string, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 || n < 3 {
		return "", false
	}
	f := strings.Fields(stat[i+1:])
	if n-3 >= len(f) {
		return "", false
	}
	return f[n-3], true
}

// procUsage is what the benchmark reads about the gateway process.
type procUsage struct {
	RSSKiB  int64         // VmRSS
	HWMKiB  int64         // VmHWM, the peak RSS
	AnonKiB int64         // RssAnon: heap and stacks, without the mapped binary
	CPU     time.Duration // user + system time so far
	// ChildCPU is the user and system time of its children that ended
	// and were waited for (cutime + cstime): for sshd, the sessions it
	// served.
	ChildCPU time.Duration
	Threads  int64
}

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat; it
// is 100 on every Linux architecture Go supports.
const clockTick = 100

// usageOf reads /proc/PID/status and /proc/PID/stat.
func usageOf(pid int) (procUsage, error) {
	var u procUsage
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			u.RSSKiB = n
		case "VmHWM":
			u.HWMKiB = n
		case "RssAnon":
			u.AnonKiB = n
		case "Threads":
			u.Threads = n
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return u, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	var ticks [4]int64 // utime, stime, cutime, cstime: fields 14 to 17
	for i := range ticks {
		f, ok := statField(string(stat), 14+i)
		if !ok {
			return u, fmt.Errorf("parse stat of pid %d", pid)
		}
		ticks[i], _ = strconv.ParseInt(f, 10, 64)
	}
	u.CPU = time.Duration(ticks[0]+ticks[1]) * time.Second / clockTick
	u.ChildCPU = time.Duration(ticks[2]+ticks[3]) * time.Second / clockTick
	return u, nil
}
