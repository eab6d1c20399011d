module github.com/terminator-gw/terminator

go 1.26.8

require go.nanomsg.org/mangos/v3 v3.4.2 // indirect
