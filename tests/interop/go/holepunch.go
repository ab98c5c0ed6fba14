package main

// The hole-punching roles, with the command line and the output lines of
// examples/holepunch.rs:
//
//	relay: peer <id>                        first, in every role ("listen: peer ...")
//	relay: listening on <multiaddr>/p2p/<id>
//	listen: reservation accepted by the relay
//	dial: circuit with <peer> open through the relay
//	dial: direct connection with <peer> at <remote multiaddr> (Dialer|Listener), <ms> ms after the circuit
//	RESULT direct=true ms=<ms from the circuit to the direct connection>   (exit 0)
//	RESULT direct=false                                                      (exit 1)
//
// `dial` prints RESULT direct=true only after a ping over the direct connection.
//
// What go-libp2p v0.52 needs for DCUtR, and what this file does about it:
//   - Its hole-punching service starts only once the host has a public address: an observed
//     address (from identify) whose IP go-libp2p does not consider private or unroutable
//     (manet.IsPublicAddr: 203.0.113.0/24, 198.51.100.0/24, 192.0.2.0/24, 198.18.0.0/15 and
//     2001:db8::/32 are unroutable, so a test bed must not use them for its public segment).
//     One observer is enough for hole punching (HolePunchAddrs asks the observed-address
//     manager for addresses with at least 1 observer; the threshold of 4 applies only to the
//     addresses the host advertises), so the relay's identify suffices.
//   - An observation is recorded only if the connection's local address is a listening
//     address, i.e. only if the dial to the relay left from the listening port (port reuse).
//   - The service checks for a public address with a backoff of up to 5 s, and until then
//     neither answers DCUtR streams nor starts hole punches. `listen` and `dial` therefore wait
//     until the DCUtR protocol is registered before they report the reservation and before
//     `dial` opens the circuit; if it is not within 10 s (e.g. with --no-reuse), they say so
//     and go on, and no hole punch happens.

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	"github.com/libp2p/go-libp2p/p2p/protocol/holepunch"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	msmux "github.com/multiformats/go-multistream"
)

// How long `listen` and `dial` wait for the hole-punching service to start.
const holePunchingStart = 10 * time.Second

type holepunchArgs struct {
	mode    string
	listen  string
	relay   ma.Multiaddr
	relayID peer.ID
	peer    peer.ID
	seed    int
	timeout time.Duration
	reuse   bool
}

func parseHolepunchArgs(mode string, args []string) (holepunchArgs, error) {
	flags := flag.NewFlagSet(mode, flag.ContinueOnError)
	listen := flags.String("listen", "/ip4/0.0.0.0/tcp/4001", "multiaddr to listen on")
	relayAddr := flags.String("relay", "", "the relay's multiaddr, ending with /p2p/<id>")
	target := flags.String("peer", "", "the peer to dial through the relay")
	seed := flags.Int("seed", -1, "derive the key from N (0-255)")
	timeout := flags.Uint("timeout", 30, "seconds to wait for a direct connection")
	noReuse := flags.Bool("no-reuse", false, "dial from ephemeral ports")
	if err := flags.Parse(args); err != nil {
		return holepunchArgs{}, err
	}
	a := holepunchArgs{
		mode:    mode,
		listen:  *listen,
		seed:    *seed,
		timeout: time.Duration(*timeout) * time.Second,
		reuse:   !*noReuse,
	}
	if mode != "relay" {
		if *relayAddr == "" {
			return a, errors.New("--relay is required\n" + usage)
		}
		addr, err := ma.NewMultiaddr(*relayAddr)
		if err != nil {
			return a, fmt.Errorf("--relay %s: %w", *relayAddr, err)
		}
		id, err := peer.IDFromP2PAddr(addr)
		if err != nil {
			return a, fmt.Errorf("--relay must end with /p2p/<relay peer id>: %s", addr)
		}
		a.relay, a.relayID = addr, id
	}
	if mode == "dial" {
		if *target == "" {
			return a, errors.New("--peer is required\n" + usage)
		}
		id, err := peer.Decode(*target)
		if err != nil {
			return a, fmt.Errorf("--peer %s: %w", *target, err)
		}
		a.peer = id
	}
	return a, nil
}

// sayer prints "<role>: <line>".
type sayer string

func (s sayer) say(format string, v ...any) {
	fmt.Printf(string(s)+": "+format+"\n", v...)
}

func runHolepunch(mode string, args []string) error {
	a, err := parseHolepunchArgs(mode, args)
	if err != nil {
		return err
	}
	key, err := keyFromSeed(a.seed)
	if err != nil {
		return err
	}
	out := sayer(mode)
	if mode == "relay" {
		return runRelay(a, key, out)
	}
	h, err := newHost(hostConfig{
		key:          key,
		listen:       []string{a.listen},
		reuse:        a.reuse,
		relayClient:  true,
		holePunching: true,
		tracer:       tracer{out},
	})
	if err != nil {
		return err
	}
	defer h.Close()
	out.say("peer %s", h.ID())

	conns := make(chan network.Conn, 64)
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) { conns <- c },
		DisconnectedF: func(_ network.Network, c network.Conn) {
			if c.RemotePeer() != a.relayID {
				out.say("connection with %s via %s closed", c.RemotePeer(), c.RemoteMultiaddr())
			}
		},
	})
	if err := joinRelay(h, a, out); err != nil {
		return err
	}
	if mode == "dial" {
		circuit := a.relay.Encapsulate(ma.StringCast("/p2p-circuit"))
		out.say("dialing %s through the relay", a.peer)
		go func() {
			ctx := network.WithAllowLimitedConn(context.Background(), "circuit")
			info := peer.AddrInfo{ID: a.peer, Addrs: []ma.Multiaddr{circuit}}
			if err := h.Connect(ctx, info); err != nil {
				out.say("circuit to %s failed: %v", a.peer, err)
			}
		}()
	}
	return punch(h, conns, a, out)
}

// joinRelay connects to the relay, learns our address from its identify, waits for the
// hole-punching service and reserves a slot.
func joinRelay(h host.Host, a holepunchArgs, out sayer) error {
	identified, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return err
	}
	defer identified.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := peer.AddrInfoFromP2pAddr(a.relay)
	if err != nil {
		return err
	}
	if err := h.Connect(ctx, *info); err != nil {
		return fmt.Errorf("cannot reach the relay: %w", err)
	}
	out.say("connected to the relay at %s", a.relay)
	for learned := false; !learned; {
		select {
		case e := <-identified.Out():
			if id := e.(event.EvtPeerIdentificationCompleted); id.Peer == a.relayID {
				out.say("the relay observes us at %s", id.ObservedAddr)
				learned = true
			}
		case <-ctx.Done():
			return errors.New("no identify from the relay")
		}
	}
	if !waitForHolePunching(h, holePunchingStart) {
		out.say("no public address after %v: go-libp2p's hole punching did not start", holePunchingStart)
	}
	if _, err := client.Reserve(ctx, h, *info); err != nil {
		return fmt.Errorf("reservation refused by the relay: %w", err)
	}
	out.say("reachable through the relay at %s/p2p-circuit/p2p/%s", a.relay, h.ID())
	out.say("reservation accepted by the relay")
	return nil
}

// waitForHolePunching waits until the DCUtR protocol is registered, which go-libp2p does once
// the host has a public address.
func waitForHolePunching(h host.Host, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if slices.Contains(h.Mux().Protocols(), holepunch.Protocol) {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func isRelayed(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_CIRCUIT)
	return err == nil
}

// role names who dialed the connection, as rust-libp2p's ConnectedPoint does. In a hole punch
// both sides dial and both print Dialer; the roles in the upgrade are set apart from this: the
// side that initiated DCUtR (the one the circuit reached) is the server, the other the client,
// in go-libp2p since v0.41 as in rust-libp2p.
func role(c network.Conn) string {
	if c.Stat().Direction == network.DirInbound {
		return "Listener"
	}
	return "Dialer"
}

type pingResult struct {
	conn network.Conn
	rtt  time.Duration
	err  error
}

// punch waits for the circuit, the direct connection and a ping over it. `dial` waits for
// a.peer; `listen` for the first peer arriving through a circuit.
func punch(h host.Host, conns <-chan network.Conn, a holepunchArgs, out sayer) error {
	dialer := a.mode == "dial"
	target := a.peer
	deadline := time.After(a.timeout)
	pings := make(chan pingResult, 8)
	var circuitAt time.Time
	directMs := -1.0
	pingOn := func(c network.Conn, after time.Duration) {
		go func() {
			time.Sleep(after)
			rtt, err := pingOver(c)
			pings <- pingResult{c, rtt, err}
		}()
	}
	for {
		select {
		case c := <-conns:
			p := c.RemotePeer()
			switch {
			case isRelayed(c.RemoteMultiaddr()) && (target == "" || target == p):
				target = p
				if circuitAt.IsZero() {
					circuitAt = time.Now()
				}
				out.say("circuit with %s open through the relay", p)
			case target != "" && target == p:
				after := time.Since(circuitAt)
				out.say("direct connection with %s at %s (%s), %d ms after the circuit",
					p, c.RemoteMultiaddr(), role(c), after.Milliseconds())
				if directMs < 0 {
					directMs = float64(after.Microseconds()) / 1000
				}
				pingOn(c, 0)
			}
		case r := <-pings:
			if r.err != nil {
				out.say("ping %s over the direct connection failed: %v", r.conn.RemotePeer(), r.err)
				if !r.conn.IsClosed() {
					pingOn(r.conn, time.Second)
				}
				continue
			}
			out.say("ping %s over the direct connection: %v", r.conn.RemotePeer(), r.rtt)
			if dialer {
				fmt.Printf("RESULT direct=true ms=%.1f\n", directMs)
				return nil
			}
		case <-deadline:
			if dialer {
				fmt.Println("RESULT direct=false")
				os.Exit(1)
			}
			return nil
		}
	}
}

// pingOver runs one round of /ipfs/ping/1.0.0 on a stream of `c` itself (the host's ping
// would pick any connection to the peer, the circuit included).
func pingOver(c network.Conn) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.NewStream(ctx)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if err := msmux.SelectProtoOrFail(ping.ID, s); err != nil {
		s.Reset()
		return 0, err
	}
	sent := make([]byte, ping.PingSize)
	if _, err := rand.Read(sent); err != nil {
		return 0, err
	}
	started := time.Now()
	if _, err := s.Write(sent); err != nil {
		s.Reset()
		return 0, err
	}
	got := make([]byte, ping.PingSize)
	if _, err := io.ReadFull(s, got); err != nil {
		s.Reset()
		return 0, err
	}
	rtt := time.Since(started)
	if string(got) != string(sent) {
		return 0, errors.New("ping payload differs")
	}
	return rtt, nil
}

// tracer prints the hole-punching service's events.
type tracer struct{ out sayer }

func (t tracer) Trace(e *holepunch.Event) {
	switch evt := e.Evt.(type) {
	case *holepunch.DirectDialEvt:
		t.out.say("direct dial to %s before hole punching: success=%v %s", e.Remote, evt.Success, evt.Error)
	case *holepunch.ProtocolErrorEvt:
		t.out.say("hole punch with %s failed: protocol error: %s", e.Remote, evt.Error)
	case *holepunch.StartHolePunchEvt:
		t.out.say("hole punch with %s: dialing %v (rtt %v)", e.Remote, evt.RemoteAddrs, evt.RTT)
	case *holepunch.HolePunchAttemptEvt:
		t.out.say("hole punch with %s: attempt %d", e.Remote, evt.Attempt)
	case *holepunch.EndHolePunchEvt:
		if evt.Success {
			t.out.say("hole punch with %s succeeded", e.Remote)
		} else {
			t.out.say("hole punch with %s failed: %s", e.Remote, evt.Error)
		}
	}
}
