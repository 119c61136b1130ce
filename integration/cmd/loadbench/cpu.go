package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-bff/caddy-bff/integration/internal/harness"
)

// CPU accounting from /proc, and CPU profiles from Caddy's admin endpoint.

// cpuTime is a process's (Caddy's, a peer's) user+system CPU time so
// far; ok is false where there is no /proc.
func cpuTime(c *harness.Process) (time.Duration, bool) {
	return procCPU(strconv.Itoa(c.Pid()))
}

// clkTck is USER_HZ, the unit of /proc's CPU times, on every Linux ABI Go
// supports.
const clkTck = 100

// procCPU is a process's user+system CPU time so far, from
// /proc/PID/stat (pid may be "self").
func procCPU(pid string) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clkTck, true
}

// machineCPU is the CPU time all CPUs spent running processes so far
// (user, nice, system: interrupt and softirq time, much of it this
// benchmark's loopback traffic, belongs to no process and is left out),
// and the time the hypervisor stole from this machine, from /proc/stat.
func machineCPU() (procs, steal time.Duration, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	// cpu user nice system idle iowait irq softirq steal …
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0, false
	}
	var v [8]int64
	for i := range v {
		if v[i], err = strconv.ParseInt(f[i+1], 10, 64); err != nil {
			return 0, 0, false
		}
	}
	tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / clkTck }
	return tick(v[0] + v[1] + v[2]), tick(v[7]), true
}

// cpuSample is the CPU time of the gateway process (caddy: the one of
// the site being measured), of this process and of the machine.
type cpuSample struct {
	at                        time.Time
	caddy, self, procs, steal time.Duration
	ok                        bool
}

func sampleCPU(c *harness.Process) cpuSample {
	s := cpuSample{at: time.Now()}
	var ok1, ok2, ok3 bool
	s.caddy, ok1 = cpuTime(c)
	s.self, ok2 = procCPU("self")
	s.procs, s.steal, ok3 = machineCPU()
	s.ok = ok1 && ok2 && ok3
	return s
}

// fetchProfile saves a CPU profile of Caddy over d from its admin endpoint.
func fetchProfile(adminAddr string, d time.Duration, file string) error {
	secs := max(1, int(d.Seconds()))
	c := &http.Client{Timeout: d + 30*time.Second}
	resp, err := c.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", adminAddr, secs))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("admin endpoint answered %d: %s", resp.StatusCode, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
