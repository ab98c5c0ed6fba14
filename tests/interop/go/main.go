// Command peer is a go-libp2p node for the interoperability tests of libp2p-reuseport.
//
// It runs go-libp2p v0.52 with the TCP transport and its default port reuse
// (p2p/net/reuseport), noise, yamux, identify, ping, the circuit relay v2 client and the
// hole-punching (DCUtR) service, in one of four roles:
//
//	peer   --listen <multiaddr> [--dial <multiaddr>/p2p/<id>] [--share]
//	relay  --listen <multiaddr> [--seed N]
//	listen --relay <relay multiaddr>/p2p/<id> [--listen <multiaddr>] [options]
//	dial   --relay <relay multiaddr>/p2p/<id> --peer <peer id> [--listen <multiaddr>] [options]
//	options: --seed N, --timeout SECONDS, --no-reuse
//
// `peer` prints one JSON object per line (see peer.go), like tests/interop/js/peer.mjs. With
// --share it also runs the WebSocket transport on the TCP transport's listening socket
// (libp2p.ShareTCPListener, p2p/transport/tcpreuse) and listens on <multiaddr>/ws too.
// `relay`, `listen` and `dial` take the command line of examples/holepunch.rs and print the same
// lines, so that a test bed can run either implementation in any role (see holepunch.go).
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/libp2p/go-libp2p/p2p/transport/websocket"
)

const usage = `usage: peer peer --listen <multiaddr> [--dial <multiaddr>/p2p/<id>] [--share]
       peer relay --listen <multiaddr> [--seed N]
       peer listen --relay <relay multiaddr/p2p/id> [--listen <multiaddr>] [options]
       peer dial --relay <relay multiaddr/p2p/id> --peer <peer id> [--listen <multiaddr>] [options]
options: --seed N, --no-reuse, --timeout SECONDS`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch mode := os.Args[1]; mode {
	case "peer":
		err = runPeer(os.Args[2:])
	case "relay", "listen", "dial":
		err = runHolepunch(mode, os.Args[2:])
	default:
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// hostConfig is what differs between the roles.
type hostConfig struct {
	key    crypto.PrivKey
	listen []string
	// reuse keeps go-libp2p's default: dials leave from a listening port (SO_REUSEPORT).
	reuse bool
	// relayClient enables the circuit relay v2 transport (reservations, incoming circuits).
	relayClient bool
	// holePunching enables the DCUtR service; tracer sees its events.
	holePunching bool
	tracer       holepunch.EventTracer
	// shareTCP runs the WebSocket transport too, on the TCP transport's listening sockets: each
	// accepted connection goes to one or the other by its first bytes.
	shareTCP bool
}

func newHost(c hostConfig) (host.Host, error) {
	var tcpOptions []any
	if !c.reuse {
		// The same as LIBP2P_TCP_REUSEPORT=false: dials leave from ephemeral ports.
		tcpOptions = append(tcpOptions, tcp.DisableReuseport())
	}
	options := []libp2p.Option{
		libp2p.Identity(c.key),
		libp2p.ListenAddrStrings(c.listen...),
		libp2p.Transport(tcp.NewTCPTransport, tcpOptions...),
		libp2p.Security(noise.ID, noise.New),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.Ping(true),
	}
	if c.shareTCP {
		options = append(options, libp2p.ShareTCPListener(), libp2p.Transport(websocket.New))
	}
	if !c.relayClient {
		options = append(options, libp2p.DisableRelay())
	}
	if c.holePunching {
		var hpOptions []holepunch.Option
		if c.tracer != nil {
			hpOptions = append(hpOptions, holepunch.WithTracer(c.tracer))
		}
		options = append(options, libp2p.EnableHolePunching(hpOptions...))
	}
	return libp2p.New(options...)
}

// keyFromSeed returns the ed25519 key of examples/holepunch.rs for `--seed N`: the 32 bytes
// [N; 32] are the secret seed (rust: Keypair::ed25519_from_bytes([N; 32])), so both give the
// same peer id. Without a seed, a new key.
func keyFromSeed(seed int) (crypto.PrivKey, error) {
	if seed < 0 {
		key, _, err := crypto.GenerateEd25519Key(rand.Reader)
		return key, err
	}
	if seed > 255 {
		return nil, fmt.Errorf("--seed %d: must be 0-255", seed)
	}
	secret := make([]byte, ed25519.SeedSize)
	for i := range secret {
		secret[i] = byte(seed)
	}
	return crypto.UnmarshalEd25519PrivateKey(ed25519.NewKeyFromSeed(secret))
}

// stopSignal returns a channel that receives SIGINT and SIGTERM.
func stopSignal() <-chan os.Signal {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	return stop
}
