// A plain HTTP/1.1 server in Go that links no grpc-go, only the standard
// library's net/http: GET /hello answers 200 "hello\n", anything else 404.
// Prints "port N" once listening on 127.0.0.1.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func hello(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || r.URL.Path != "/hello" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "hello\n")
}

func main() {
	port := flag.Int("port", 0, "port to listen on")
	flag.Parse()
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", lis.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	if err := http.Serve(lis, http.HandlerFunc(hello)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
