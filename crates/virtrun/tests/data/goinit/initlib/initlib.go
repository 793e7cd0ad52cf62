// Package initlib makes a Go test binary a virtrun standalone init, the way
// inits built with the original virtrun's Go sysinit package do it, written
// only against virtrun's standalone contract (docs/reference.md#channels): port
// 0 is the kernel console and takes the exit marker, port 1 the binary's
// stdout, ports 2, 3, … the files go test's flags name, each linked to
// /dev/virtrunN. Like the original's sysinit, it leaves the ports (ttys) in
// their default mode, so each \n it writes reaches the host as \r\n, and it
// loads no kernel module: on a kernel whose virtio drivers are modules,
// virtrun's loader loads them before this init starts.
//
// It uses nothing but the standard library, so the test module builds
// offline.
package initlib

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TCSBRK, not in package syscall; the same on every architecture virtrun
// supports.
const tcsbrk = 0x5409

// ExitMarker names the exit code on the console: virtrun's marker, or
// "SYSINIT_EXIT_CODE" as the original's newer sysinit prints it.
var ExitMarker = "VIRTRUN_EXIT_CODE"

// Ports are the host ports found, by number.
var Ports = map[int]string{}

// RunTests sets the system up, runs the tests, prints the exit marker on the
// console and powers off. It never returns.
func RunTests(m *testing.M) {
	Run(m.Run)
}

// Run sets the system up, runs main, prints its exit code with the marker
// on the console and powers off. It never returns.
func Run(main func() int) {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "initlib: not PID 1")
		os.Exit(127)
	}
	code := 126
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "initlib: ERROR", err)
	} else {
		code = main()
	}
	for _, dev := range Ports {
		if f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
			drain(f)
			f.Close()
		}
	}
	console, err := os.OpenFile("/dev/console", os.O_WRONLY|syscall.O_NOCTTY, 0)
	if err == nil {
		fmt.Fprintf(console, "\n%s: %d\n", ExitMarker, code)
		drain(console)
	}
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_RESTART)
	select {}
}

func setup() error {
	mounts := []struct{ dir, fstype string }{
		{"/dev", "devtmpfs"}, {"/proc", "proc"}, {"/sys", "sysfs"},
		{"/tmp", "tmpfs"}, {"/run", "tmpfs"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			return err
		}
		if err := syscall.Mount(m.fstype, m.dir, m.fstype, 0, ""); err != nil && !errors.Is(err, syscall.EBUSY) {
			return fmt.Errorf("mount %s: %w", m.dir, err)
		}
	}
	if err := findPorts(); err != nil {
		return err
	}
	for n, dev := range Ports {
		link := "/dev/virtrun" + strconv.Itoa(n)
		if err := os.Symlink(dev, link); err != nil {
			return err
		}
		f, err := os.OpenFile(dev, os.O_WRONLY|syscall.O_NOCTTY, 0)
		if err != nil {
			return err
		}
		// Left in the tty's default mode, as the original's sysinit
		// leaves its ports: virtrun undoes the tty's \n -> \r\n.
		held = append(held, f)
		if n == 1 {
			if err := syscall.Dup3(int(f.Fd()), 1, 0); err != nil {
				return err
			}
		}
	}
	return nil
}

// The ports, open until the power-off.
var held []*os.File

// findPorts finds ports 1, 2, …: the virtio console ports (/dev/hvcN) when
// a virtio console device exists, the connected UARTs (ttySN) otherwise.
func findPorts() error {
	devs, _ := filepath.Glob("/sys/bus/virtio/devices/*/device")
	virtio := false
	for _, d := range devs {
		if id, _ := os.ReadFile(d); strings.TrimSpace(string(id)) == "0x0003" {
			virtio = true
		}
	}
	if virtio {
		// The driver adds its ports one by one after its probe, each as
		// /dev/vport0pN, and makes it a console (hvcN) a moment later.
		deadline := time.Now().Add(5 * time.Second)
		last := -1
		for time.Now().Before(deadline) {
			found, _ := filepath.Glob("/dev/vport0p*")
			if len(found) > 0 && len(found) == last {
				break
			}
			last = len(found)
			time.Sleep(50 * time.Millisecond)
		}
		found, _ := filepath.Glob("/dev/vport0p*")
		for _, dev := range found {
			n, err := strconv.Atoi(strings.TrimPrefix(dev, "/dev/vport0p"))
			if err != nil || n == 0 {
				continue
			}
			hvc := "/dev/hvc" + strconv.Itoa(n)
			for {
				f, err := os.OpenFile(hvc, os.O_WRONLY|syscall.O_NOCTTY, 0)
				if err == nil {
					f.Close()
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("port %d: %w", n, err)
				}
				time.Sleep(5 * time.Millisecond)
			}
			Ports[n] = hvc
		}
		return nil
	}
	info, err := os.ReadFile("/proc/tty/driver/serial")
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(info), "\n") {
		num, rest, ok := strings.Cut(line, ":")
		n, err := strconv.Atoi(num)
		if !ok || err != nil || n == 0 || !strings.Contains(rest, "uart:") || strings.Contains(rest, "uart:unknown") {
			continue
		}
		Ports[n] = "/dev/ttyS" + num
	}
	return nil
}

func ioctl(f *os.File, req uintptr, arg uintptr) syscall.Errno {
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, arg)
	return errno
}

// drain waits until a tty sent what was written to it (tcdrain).
func drain(f *os.File) {
	ioctl(f, tcsbrk, 1)
}
