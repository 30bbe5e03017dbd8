// Command server runs the go_service HTTP service.
//
//	server -listen=127.0.0.1:8080    serve until interrupted
//	server -selftest                 serve on a free loopback port, ask
//	                                 /hello?name=hallmark once, print the reply, exit
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"example.com/go_service/api"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	selftest := flag.Bool("selftest", false, "serve on a free loopback port, make one request, print the reply and exit")
	flag.Parse()

	addr := *listen
	if *selftest {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatalf("listen on %s: %v", addr, err)
	}
	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)

	if *selftest {
		c := &http.Client{Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + ln.Addr().String() + "/hello?name=hallmark")
		if err != nil {
			log.Fatalf("selftest request: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Printf("selftest: %s %s", resp.Status, body)
		if resp.StatusCode != http.StatusOK {
			os.Exit(1)
		}
		return
	}

	log.Printf("serving on http://%s", ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
}
