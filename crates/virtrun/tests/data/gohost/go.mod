module example.com/gohost

go 1.21
