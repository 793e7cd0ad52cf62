// Package gohost holds tests that expect what go test gives them on the
// host: the package directory as the working directory, its testdata, a
// shell and tools, the user database.
package gohost

import (
	"flag"
	"os"
	"os/exec"
	"os/user"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt")

func TestFixtureByRelativePath(t *testing.T) {
	got, err := os.ReadFile("testdata/x")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "fixture\n" {
		t.Fatalf("testdata/x = %q", got)
	}
}

func TestGolden(t *testing.T) {
	const want = "new\n"
	if *update {
		if err := os.WriteFile("testdata/golden.txt", []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("testdata/golden.txt")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("golden = %q, want %q (run with -update)", got, want)
	}
}

func TestShellAndTools(t *testing.T) {
	out, err := exec.Command("/bin/sh", "-c", "sleep 0 && ip link show lo && echo done").CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	t.Logf("%s", out)
}

func TestRootIsKnown(t *testing.T) {
	u, err := user.LookupId("0")
	if err != nil {
		t.Fatal(err)
	}
	if u.Username != "root" {
		t.Fatalf("uid 0 is %q", u.Username)
	}
}
