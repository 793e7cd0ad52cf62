package vt

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestNative runs anywhere: natively and in a guest.
func TestNative(t *testing.T) {
	for n, want := range map[int]string{-3: "negative", 0: "zero", 7: "small"} {
		if got := Classify(n); got != want {
			t.Errorf("Classify(%d) = %q, want %q", n, got, want)
		}
	}
	if got := Sum(1, -2, 3); got != 4 {
		t.Errorf("Sum = %d, want 4", got)
	}
}

// TestGuestMount needs root and a real kernel: it mounts a tmpfs and creates
// a network namespace. It fails (never skips) outside a virtrun guest.
func TestGuestMount(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	defer syscall.Unmount(dir, 0)
	file := filepath.Join(dir, "hello")
	if err := os.WriteFile(file, []byte("hello from the guest\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	const tmpfsMagic = 0x01021994
	if st.Type != tmpfsMagic {
		t.Fatalf("%s is not a tmpfs: type %#x", dir, st.Type)
	}
	if Classify(42) != "large" {
		t.Fatal("Classify(42)")
	}
}
