package redistest

import (
	"strings"
	"testing"
)

// The replies the hand-written RESP reader got wrong: an error reply is
// an error, nil members of an array are empty lines, not dropped.
func TestCommand(t *testing.T) {
	s := Start(t)
	if out, err := s.Command("SET", "a", "1"); err != nil || out != "OK" {
		t.Fatalf("SET: %q %v", out, err)
	}
	if out, err := s.Command("MGET", "a", "missing", "a"); err != nil || out != "1\n\n1" {
		t.Fatalf("MGET with a nil member: %q %v", out, err)
	}
	if out, err := s.Command("GET", "missing"); err != nil || out != "" {
		t.Fatalf("GET missing: %q %v", out, err)
	}
	if out, err := s.Command("INCR", "n"); err != nil || out != "1" {
		t.Fatalf("INCR: %q %v", out, err)
	}
	if _, err := s.Command("NOSUCHCOMMAND"); err == nil || !strings.Contains(err.Error(), "ERR") {
		t.Fatalf("an error reply came back as success: %v", err)
	}
	s.Stop()
	if _, err := s.Command("PING"); err == nil {
		t.Fatal("a stopped server answered")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if out, _ := s.Command("GET", "a"); out != "" {
		t.Fatalf("a restarted server kept %q", out)
	}
}

func TestSentinelFailover(t *testing.T) {
	s := StartSentinel(t)
	if s.Master() != s.Primary.Addr() {
		t.Fatalf("master %s, want %s", s.Master(), s.Primary.Addr())
	}
	s.Failover(t)
	if s.Master() != s.Replica.Addr() {
		t.Fatalf("after failover the master is %s", s.Master())
	}
}
