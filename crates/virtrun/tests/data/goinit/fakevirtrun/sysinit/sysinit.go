// Package sysinit stands in for the original virtrun's sysinit package in
// the port-encoding tests: a module of the original's path, required at the
// version under test through a local replace, so that the init's build
// information names that version as an init built with the release would.
// Port writes to a port as that release's sysinit does.
package sysinit

import (
	"encoding/base64"
	"io"
	"os"
	"syscall"
	"unsafe"
)

// Port returns a writer that writes to the port f as the original's
// sysinit of style does: "tty" (up to v0.14: the tty in its default mode),
// "base64" (v0.15.0 to v0.15.3: a base64 stream in lines of 76), "raw"
// (v0.15.4 on: the tty made raw, the bytes exactly). Close flushes.
func Port(f *os.File, style string) (io.WriteCloser, error) {
	switch style {
	case "base64":
		return base64.NewEncoder(base64.StdEncoding, &lines{w: f}), nil
	case "raw":
		var t syscall.Termios
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t))); e != 0 {
			return nil, e
		}
		t.Iflag, t.Oflag, t.Lflag, t.Cflag = 0, 0, 0, syscall.CLOCAL
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCSETS, uintptr(unsafe.Pointer(&t))); e != 0 {
			return nil, e
		}
	}
	return nopCloser{f}, nil
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// lines breaks what it is given into lines of 76 bytes.
type lines struct {
	w   io.Writer
	col int
}

func (l *lines) Write(p []byte) (int, error) {
	for _, b := range p {
		out := []byte{b}
		if l.col == 76 {
			out = []byte{'\n', b}
			l.col = 0
		}
		if _, err := l.w.Write(out); err != nil {
			return 0, err
		}
		l.col++
	}
	return len(p), nil
}
