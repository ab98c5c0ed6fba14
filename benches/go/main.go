// Command go-bench measures go-libp2p's port-reusing TCP transport (p2p/net/reuseport,
// reuseport.Transport Listen and Dial) for benches/compare (go.rs), which starts it and drives it
// round by round, interleaved with the other implementations, against its own echo servers.
//
// It reads one command per line on standard input and answers each with one JSON line:
//
//	dialer                          -> {"id":N,"port":P}  a Transport with a listener on 127.0.0.1:0
//	seq ID ADDR N MODE              -> samples            N dials from dialer ID, one by one
//	concurrent ID N ADDR[,ADDR...]  -> samples            N dials at once from dialer ID
//	close ID                        -> {}                 closes dialer ID
//
// MODE says how each connection ends after its dial and one-byte echo: "server-first" reads
// until the server closes, then closes; "client-first" closes at once. "seq" samples carry the
// dial time of every dial and the whole cycle (dial, echo, close) in nanoseconds.
//
// Failed system calls are counted as they happen: reuseport.Transport logs every failed dial
// from a listening port ("failed to reuse port") with the failing call's error before it falls
// back to an ephemeral port; a log handler counts those records by the call they name (connect,
// bind, or other).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"

	logging "github.com/libp2p/go-libp2p/gologshim"
)

func main() {
	counter := &syscallCounter{}
	// Before any dial: go-libp2p's loggers take the default handler on first use.
	logging.SetDefaultHandler(counter.handler(slog.NewTextHandler(os.Stderr, nil)))
	bench := newBench(counter)
	out := json.NewEncoder(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		reply, err := bench.run(strings.Fields(in.Text()))
		if err != nil {
			reply = map[string]any{"error": err.Error()}
		}
		if err := out.Encode(reply); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
}
