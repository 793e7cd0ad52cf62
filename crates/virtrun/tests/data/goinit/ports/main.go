// Command ports is a standalone init that writes, as the original's sysinit
// of one release does (see the fake module github.com/aibor/virtrun), data
// with \r\n, \r\r\n, NUL and every byte value to stdout (port 1) and to the
// file of its -test.coverprofile flag (a port virtrun pointed it at).
package main

import (
	"fmt"
	"os"
	"strings"

	"example.com/goinit/initlib"
	"github.com/aibor/virtrun/sysinit"
)

// style is set at build time: -ldflags "-X main.style=base64".
var style = "tty"

func data() []byte {
	d := []byte("line\r\ncr cr lf\r\r\nlf\nnul\x00\n")
	for i := 0; i < 3*256; i++ {
		d = append(d, byte(i))
	}
	return d
}

func write(f *os.File) error {
	w, err := sysinit.Port(f, style)
	if err != nil {
		return err
	}
	if _, err := w.Write(data()); err != nil {
		return err
	}
	return w.Close()
}

func main() {
	initlib.Run(func() int {
		for _, arg := range os.Args[1:] {
			path, ok := strings.CutPrefix(arg, "-test.coverprofile=")
			if !ok {
				continue
			}
			f, err := os.OpenFile(path, os.O_WRONLY, 0)
			if err == nil {
				err = write(f)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "file port:", err)
				return 1
			}
		}
		if err := write(os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "stdout:", err)
			return 1
		}
		return 0
	})
}
