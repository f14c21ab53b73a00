// A gRPC Greeter server in Go, built with Debian's grpc-go
// (../build-go-all.sh) and with the releases of the version matrix from the
// module proxy (../matrix.sh). Prints "port N" once listening on 127.0.0.1.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "podtap/peers/helloworld"
)

type greeter struct {
	pb.UnimplementedGreeterServer
}

func (greeter) SayHello(_ context.Context, r *pb.HelloRequest) (*pb.HelloReply, error) {
	return &pb.HelloReply{Message: "Hello, " + r.GetName() + "!"}, nil
}

func (greeter) SayHelloStream(r *pb.HelloRequest, s pb.Greeter_SayHelloStreamServer) error {
	n := int(r.GetCount())
	if n < 1 {
		n = 1
	}
	for i := 0; i < n; i++ {
		if err := s.Send(&pb.HelloReply{Message: fmt.Sprintf("Hello #%d, %s!", i, r.GetName())}); err != nil {
			return err
		}
	}
	return nil
}

func (greeter) SayHelloError(_ context.Context, r *pb.HelloRequest) (*pb.HelloReply, error) {
	return nil, status.Errorf(codes.NotFound, "no greeting for %s: 100%% gone", r.GetName())
}

func main() {
	port := flag.Int("port", 0, "port to listen on")
	flag.Parse()
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := grpc.NewServer()
	pb.RegisterGreeterServer(s, greeter{})
	fmt.Printf("port %d\n", lis.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	if err := s.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
