// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): "READY=1" once the service accepts connections,
// "WATCHDOG=1" while it is alive, "STOPPING=1" on the way out. It is a
// datagram of NAME=VALUE lines to the unix socket named by NOTIFY_SOCKET;
// without that variable (not started by systemd, or Type=simple) every
// call does nothing.
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
)

// Notifier sends states to one notification socket.
type Notifier struct {
	// Socket is the path of the socket; "@name" is an abstract socket.
	// Empty: Notify does nothing.
	Socket string
	// Watchdog is the interval systemd expects a WATCHDOG=1 within
	// (WatchdogSec=); zero: no watchdog.
	Watchdog time.Duration
}

// FromEnv reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID. The
// watchdog applies only to the process WATCHDOG_PID names, when set, so
// a child that inherited the environment does not feed it. A malformed
// WATCHDOG_USEC is an error: systemd would kill a service that ignores it.
func FromEnv() (Notifier, error) {
	n := Notifier{Socket: os.Getenv("NOTIFY_SOCKET")}
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return n, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return n, nil
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 || u > uint64(time.Duration(1<<62)/time.Microsecond) {
		return n, fmt.Errorf("WATCHDOG_USEC=%q is not a positive number of microseconds", usec)
	}
	n.Watchdog = time.Duration(u) * time.Microsecond
	return n, nil
}

// Notify sends state (e.g. "READY=1") as one datagram; a write deadline
// bounds it, so a stuck manager cannot stall the caller.
func (n Notifier) Notify(state string) error {
	if n.Socket == "" {
		return nil
	}
	addr := &net.UnixAddr{Name: n.Socket, Net: "unixgram"}
	if n.Socket[0] == '@' {
		addr.Name = "\x00" + n.Socket[1:]
	} else if n.Socket[0] != '/' {
		return errors.New("NOTIFY_SOCKET is neither an absolute path nor an abstract socket")
	}
	c, err := net.DialUnix("unixgram", nil, addr)
	if err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(state)); err != nil {
		return fmt.Errorf("notify systemd: %w", err)
	}
	return nil
}

// RunWatchdog sends WATCHDOG=1 every half interval, as sd_watchdog_enabled(3)
// advises, until ctx ends; it returns at once without a watchdog. A
// process whose runtime hangs stops pinging and systemd restarts it. The
// caller owns the goroutine it runs in; onErr hears of failed pings.
func (n Notifier) RunWatchdog(ctx context.Context, onErr func(error)) {
	if n.Socket == "" || n.Watchdog <= 0 {
		return
	}
	t := time.NewTicker(n.Watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := n.Notify("WATCHDOG=1"); err != nil {
			onErr(err)
		}
	}
}
