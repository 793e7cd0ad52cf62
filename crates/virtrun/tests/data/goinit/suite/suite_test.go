package suite

import (
	"flag"
	"os"
	"strings"
	"testing"

	"example.com/goinit/initlib"
)

var (
	fail   = flag.Bool("fail", false, "make TestMaybeFail fail")
	marker = flag.String("marker", "", "the exit marker's name, if not the default")
)

// The test binary is the guest's init.
func TestMain(m *testing.M) {
	initlib.RunTests(m)
}

func TestKind(t *testing.T) {
	for n, want := range map[int]string{-1: "negative", 0: "zero", 5: "positive"} {
		if got := Kind(n); got != want {
			t.Errorf("Kind(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestInGuest holds only in a guest: PID 1, the mounts, the port links.
func TestInGuest(t *testing.T) {
	if os.Getpid() != 1 {
		t.Fatalf("PID %d", os.Getpid())
	}
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mounts), " /tmp tmpfs ") {
		t.Errorf("no tmpfs on /tmp:\n%s", mounts)
	}
	if _, err := os.Readlink("/dev/virtrun1"); err != nil {
		t.Error(err)
	}
	t.Logf("ports: %v", initlib.Ports)
}

func TestMarker(t *testing.T) {
	if *marker != "" {
		initlib.ExitMarker = *marker
	}
}

func TestMaybeFail(t *testing.T) {
	if *fail {
		t.Fatal("asked to fail")
	}
}
