package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// machineCPU is the whole machine's CPU time from the first line of
// /proc/stat: Busy counts every state but idle and iowait, Total every
// state. Why (d) wants it: opening 50 sessions at once saturates a small
// machine, and then the opening time is the sum of everyone's CPU work
// (clients, sshd, the gateway) divided by the CPUs, not any one path's
// latency. The difference of two readings says how busy the CPUs were
// and how much work a path cost in all.
type machineCPU struct {
	Busy, Total time.Duration
}

// maxJiffies bounds each field, so that the sum of eight of them in
// nanoseconds fits an int64 (8e11 ticks: 256 CPUs busy for a year).
const maxJiffies = 100_000_000_000

// readMachineCPU reads /proc/stat.
func readMachineCPU() (machineCPU, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return machineCPU{}, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return machineCPU{}, fmt.Errorf("/proc/stat: %w", err)
	}
	return parseMachineCPU(line)
}

// parseMachineCPU parses the aggregate "cpu …" line of /proc/stat: user
// nice system idle iowait irq softirq steal [guest guest_nice]. guest
// time is already counted in user and nice, so it is left out.
func parseMachineCPU(line string) (machineCPU, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return machineCPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var v [8]int64
	for i := range v {
		n, err := strconv.ParseInt(f[i+1], 10, 64)
		if err != nil || n < 0 || n > maxJiffies {
			return machineCPU{}, fmt.Errorf("/proc/stat: field %d of %q", i+1, line)
		}
		v[i] = n
	}
	tick := time.Second / clockTick // /proc/stat counts in USER_HZ too
	busy := v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
	return machineCPU{Busy: time.Duration(busy) * tick, Total: time.Duration(busy+v[3]+v[4]) * tick}, nil
}

// sub is the CPU time between two readings.
func (m machineCPU) sub(earlier machineCPU) machineCPU {
	return machineCPU{Busy: m.Busy - earlier.Busy, Total: m.Total - earlier.Total}
}

// busyPercent is the share of the CPUs' time that was busy.
func (m machineCPU) busyPercent() float64 {
	if m.Total <= 0 {
		return 0
	}
	return 100 * m.Busy.Seconds() / m.Total.Seconds()
}
