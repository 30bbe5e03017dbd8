// Command hallmark is the user-side tool: keys, signing requests, verification,
// publishing and the deploy gate. Each subcommand lives in its own file and
// registers itself in init with register.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. run gets the arguments after the subcommand name
// and returns the process exit code.
type command struct {
	name    string // e.g. "sign" or "gate check"
	summary string // one line for the usage text
	run     func(ctx context.Context, args []string) int
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("hallmark: subcommand registered twice: " + c.name)
	}
	commands[c.name] = c
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: hallmark COMMAND [flags] [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-20s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(os.Stderr, "\nRun 'hallmark COMMAND -h' for a command's flags.")
}

// lookup finds the longest registered command name that prefixes args
// ("gate check" before "gate").
func lookup(args []string) (*command, []string) {
	for n := len(args); n > 0; n-- {
		if c, ok := commands[strings.Join(args[:n], " ")]; ok {
			return c, args[n:]
		}
	}
	return nil, nil
}

func main() {
	args := os.Args[1:]
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage()
		os.Exit(2)
	}
	c, rest := lookup(args)
	if c == nil {
		fmt.Fprintf(os.Stderr, "hallmark: unknown command %q\n\n", strings.Join(args, " "))
		usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := c.run(ctx, rest)
	stop()
	os.Exit(code)
}
