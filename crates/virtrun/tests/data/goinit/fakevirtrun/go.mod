module github.com/aibor/virtrun

go 1.21
