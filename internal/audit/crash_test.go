package audit

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

const crashEnv = "TANDEM_AUDIT_CRASH_DIR"

// TestMain lets the test binary double as the crash child: with crashEnv
// set it appends a burst of events from many goroutines, printing the id
// of every event whose Append returned nil, until it is killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	os.Exit(m.Run())
}

// crashKey is where the crash test keeps its signing key: beside the log
// directory, so parent and child share it.
func crashKey(dir string) string { return dir + ".key" }

func crashChild(dir string) {
	key, err := LoadSigningKey(crashKey(dir), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	keys, err := openKeys(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	l, err := Open(Options{Dir: dir, Key: key, CheckpointEvents: 500, Keys: keys})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000; i++ { // bounded; the parent kills us long before
				id := fmt.Sprintf("%d-%d", g, i)
				if err := l.Append(context.Background(), Event{Type: Exec, Attrs: map[string]string{"id": id}}); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(3)
				}
				mu.Lock()
				os.Stdout.WriteString(id + "\n")
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	l.Close()
	os.Exit(0)
}

func TestCrashKeepsAcknowledgedEvents(t *testing.T) {
	for round := 0; round < 3; round++ {
		dir := filepath.Join(t.TempDir(), "audit")
		if err := CreateSigningKey(crashKey(dir), "tandem/audit"); err != nil {
			t.Fatal(err)
		}
		key, err := LoadSigningKey(crashKey(dir), nil)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		acked := map[string]bool{}
		sc := bufio.NewScanner(out)
		killAt := 2000 + round*3000
		for sc.Scan() {
			acked[sc.Text()] = true
			if len(acked) == killAt {
				if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			}
		}
		_ = cmd.Wait()
		if len(acked) < killAt {
			t.Fatalf("child acknowledged only %d events", len(acked))
		}
		// Lines read after the kill signal were still acknowledged before
		// the child died, so they count too.
		l, err := Open(Options{Dir: dir, Key: key, Keys: keysFor(t, dir)})
		if err != nil {
			t.Fatalf("reopen after kill: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		found := 0
		recovered := false
		if err := ReadKeys(dir, keysFor(t, dir), Filter{}, func(r Record) error {
			if acked[r.Event.Attrs["id"]] {
				found++
			}
			recovered = recovered || r.Event.Type == LogRecovered
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if found != len(acked) {
			t.Fatalf("round %d: %d of %d acknowledged events survived", round, found, len(acked))
		}
		pub, err := PublicKey(dir)
		if err != nil || pub != key.Verifier() {
			t.Fatalf("audit.pub %q, %v; want the key's %q", pub, err, key.Verifier())
		}
		rep, err := Verify(dir, pub, "")
		if err != nil || !rep.OK() {
			t.Fatalf("verify after crash: %+v %v", rep, err)
		}
		t.Logf("round %d: %d acknowledged, %d records, torn tail recovered: %v", round, len(acked), rep.Records, recovered)
	}
}

// BenchmarkAppendEncrypted measures durable appends (each Append waits for
// its fsync, each record's parts encrypted under the vault's keys) with
// many concurrent appenders sharing group commits.
func BenchmarkAppendEncrypted(b *testing.B) {
	for _, appenders := range []int{64, 256, 1024} {
		b.Run(fmt.Sprintf("appenders=%d", appenders), func(b *testing.B) {
			o := testOpts(b)
			o.CheckpointEvents = 1000
			o.tick = nil
			o.CheckpointEvery = 10 * time.Second
			l := mustOpen(b, o)
			e := ev(1)
			b.SetParallelism(max(1, appenders/runtime.GOMAXPROCS(0)))
			commits, cpu := l.commits.Load(), processCPU(b)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := l.Append(context.Background(), e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			// Less sensitive than events/s to a machine shared with
			// others: how many events share an fsync, and the CPU the
			// whole process spent per event.
			b.ReportMetric(float64(b.N)/float64(max(1, l.commits.Load()-commits)), "events/commit")
			b.ReportMetric(float64((processCPU(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/event")
			if err := l.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	o := testOpts(b)
	o.CheckpointEvents = 1000
	l := mustOpen(b, o)
	const n = 100000
	var wg sync.WaitGroup
	for g := 0; g < 100; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n/100; i++ {
				if err := l.Append(context.Background(), ev(g*1000+i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	key := pubKey(b, o.Dir)
	// The appends leave a GC cycle's work behind, which the runtime
	// charges to whoever allocates next: collected here, it is not
	// counted as verification's CPU.
	runtime.GC()
	cpu := processCPU(b)
	b.ResetTimer()
	var records uint64
	for i := 0; i < b.N; i++ {
		rep, err := Verify(o.Dir, key, o.WitnessFile)
		if err != nil || !rep.OK() {
			b.Fatalf("%+v %v", rep, err)
		}
		records += rep.Records
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "leaves/s")
	// CPU per leaf bounds leaves/s at GOMAXPROCS / cpu-µs/leaf, whatever
	// the load.
	b.ReportMetric(float64((processCPU(b)-cpu).Nanoseconds())/1000/float64(max(1, records)), "cpu-µs/leaf")
}

// processCPU is the user and system CPU time of this process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
