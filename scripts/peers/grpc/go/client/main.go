// A gRPC Greeter client in Go (built as the server is, see ../server),
// scripted over stdin/stdout so a test can decide when each call is made.
//
//	client -addr HOST:PORT [-addr HOST:PORT | -addr A,B ...] [-warmup N] [-metadata KEY=VALUE ...]
//
// -metadata pairs are sent with every call after the warm-up.
// Every -addr entry gets a grpc.ClientConn of its own, so the same address
// given twice means two TCP connections. Once every connection is up and has
// made N warm-up SayHello calls, it prints "ready"; then it reads one command
// a line and answers each with exactly one line:
//
//	unary CONN NAME         -> ok unary /helloworld.Greeter/SayHello code=0 message=MSG
//	stream CONN NAME COUNT  -> ok stream /helloworld.Greeter/SayHelloStream code=0 replies=N
//	fail CONN NAME          -> ok fail /helloworld.Greeter/SayHelloError code=C message=MSG
//	quit (or end of input)  -> closes the connections and exits 0, printing nothing
//
// CONN is the 0-based index of a connection in -addr order. A command that
// cannot be parsed, or a unary or stream call that fails, is answered with
// "error REASON". os.Stdout is unbuffered: each line is written at once.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "podtap/peers/helloworld"
)

const (
	service = "/helloworld.Greeter/"
	timeout = 30 * time.Second
)

// addrs is a repeatable flag whose values may also be comma-separated lists.
type addrs []string

func (a *addrs) String() string { return strings.Join(*a, ",") }

func (a *addrs) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s == "" {
			return fmt.Errorf("empty address in %q", v)
		}
		*a = append(*a, s)
	}
	return nil
}

func fatal(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "client: "+format+"\n", args...)
	os.Exit(1)
}

// oneLine keeps a status message on the answer's line.
func oneLine(s string) string { return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s) }

// repeated is a flag that may be given many times, each value kept whole.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, " ") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// sent is the metadata every scripted call carries (-metadata).
var sent []string

// run carries out one command and returns its answer line.
func run(clients []pb.GreeterClient, fields []string) string {
	if len(fields) == 0 {
		return "error empty command"
	}
	want := map[string]int{"unary": 3, "stream": 4, "fail": 3}[fields[0]]
	if want == 0 {
		return fmt.Sprintf("error unknown command %q", fields[0])
	}
	if len(fields) != want {
		return fmt.Sprintf("error %s takes %d arguments, got %d", fields[0], want-1, len(fields)-1)
	}
	conn, err := strconv.Atoi(fields[1])
	if err != nil || conn < 0 || conn >= len(clients) {
		return fmt.Sprintf("error no connection %q (have %d)", fields[1], len(clients))
	}
	c, req := clients[conn], &pb.HelloRequest{Name: fields[2]}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if len(sent) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, sent...)
	}
	switch fields[0] {
	case "unary":
		reply, err := c.SayHello(ctx, req)
		if err != nil {
			s := status.Convert(err)
			return fmt.Sprintf("error unary: code=%d message=%s", s.Code(), oneLine(s.Message()))
		}
		return fmt.Sprintf("ok unary %sSayHello code=0 message=%s", service, oneLine(reply.GetMessage()))
	case "stream":
		count, err := strconv.ParseInt(fields[3], 10, 32)
		if err != nil {
			return fmt.Sprintf("error bad count %q", fields[3])
		}
		req.Count = int32(count)
		replies := 0
		s, err := c.SayHelloStream(ctx, req)
		for err == nil {
			if _, err = s.Recv(); err == nil {
				replies++
			}
		}
		if err != io.EOF {
			st := status.Convert(err)
			return fmt.Sprintf("error stream: code=%d message=%s replies=%d", st.Code(), oneLine(st.Message()), replies)
		}
		return fmt.Sprintf("ok stream %sSayHelloStream code=0 replies=%d", service, replies)
	default: // fail
		_, err := c.SayHelloError(ctx, req)
		s, _ := status.FromError(err)
		return fmt.Sprintf("ok fail %sSayHelloError code=%d message=%s", service, s.Code(), oneLine(s.Message()))
	}
}

func main() {
	var list addrs
	flag.Var(&list, "addr", "server HOST:PORT; repeatable or comma-separated, one connection each")
	warmup := flag.Int("warmup", 0, "SayHello calls made on every connection before \"ready\"")
	var pairs repeated
	flag.Var(&pairs, "metadata", "KEY=VALUE sent with every scripted call; repeatable")
	flag.Parse()
	for _, p := range pairs {
		kv := strings.SplitN(p, "=", 2)
		if len(kv) != 2 {
			fatal("-metadata wants KEY=VALUE, got %q", p)
		}
		sent = append(sent, kv[0], kv[1])
	}
	if len(list) == 0 || flag.NArg() > 0 {
		fatal("usage: client -addr HOST:PORT [-addr HOST:PORT ...] [-warmup N]")
	}

	conns := make([]*grpc.ClientConn, len(list))
	clients := make([]pb.GreeterClient, len(list))
	for i, addr := range list {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		cc, err := grpc.DialContext(ctx, addr, grpc.WithInsecure(), grpc.WithBlock())
		cancel()
		if err != nil {
			fatal("connecting to %s: %v", addr, err)
		}
		conns[i], clients[i] = cc, pb.NewGreeterClient(cc)
	}
	for i, c := range clients {
		for j := 0; j < *warmup; j++ {
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			_, err := c.SayHello(ctx, &pb.HelloRequest{Name: fmt.Sprintf("warmup%d", j)})
			cancel()
			if err != nil {
				fatal("warm-up call %d on connection %d: %v", j, i, err)
			}
		}
	}
	fmt.Println("ready")

	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fields := strings.Fields(in.Text())
		if len(fields) == 1 && fields[0] == "quit" {
			break
		}
		fmt.Println(run(clients, fields))
	}
	for _, cc := range conns {
		cc.Close()
	}
	if err := in.Err(); err != nil {
		fatal("reading commands: %v", err)
	}
}
