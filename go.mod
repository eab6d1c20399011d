module github.com/terminator-gw/terminator

go 1.26.8

require (
	github.com/DataDog/datadog-go/v5 v5.9.1
	github.com/valyala/fasthttp v1.77.0
	go.nanomsg.org/mangos/v3 v3.4.2
)

require (
	github.com/Microsoft/go-winio v0.5.2 // indirect
	github.com/klauspost/compress v1.20.3 // indirect
	github.com/molecule-man/go-brrr v1.3.0 // indirect
	github.com/valyala/bytebufferpool v1.0.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
