package main

// The `peer` role: a node for the loopback interop tests. It prints one JSON object per line:
//
//	{"event":"listening","peerId":...,"addrs":[...]}
//	{"event":"connection","direction":"inbound"|"outbound","remotePeer":...,"remoteAddr":...,"localAddr":...}
//	{"event":"identify","peer":...,"observedAddr":...,"listenAddrs":[...]}
//	{"event":"ping","peer":...,"rtt":<ms>}
//	{"event":"error","what":...,"message":...}
//
// "connection" comes for every connection, with the remote address as go-libp2p sees it;
// "identify" carries the address the remote observed for us. It pings every connected peer
// once a second and runs until killed.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
)

// jsonLines writes one JSON object per line; safe for concurrent use.
type jsonLines struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (j *jsonLines) say(v map[string]any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	_ = j.enc.Encode(v)
}

func (j *jsonLines) fail(what string, err error, fields map[string]any) {
	v := map[string]any{"event": "error", "what": what, "message": err.Error()}
	for k, f := range fields {
		v[k] = f
	}
	j.say(v)
}

func addrStrings(addrs []ma.Multiaddr) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		out = append(out, a.String())
	}
	return out
}

func runPeer(args []string) error {
	flags := flag.NewFlagSet("peer", flag.ContinueOnError)
	listen := flags.String("listen", "", "multiaddr to listen on")
	dial := flags.String("dial", "", "multiaddr with /p2p/<id> to dial")
	share := flags.Bool("share", false, "also listen on <listen>/ws, on the same socket as TCP")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *listen == "" {
		return errors.New("--listen is required\n" + usage)
	}
	key, err := keyFromSeed(-1)
	if err != nil {
		return err
	}
	listens := []string{*listen}
	if *share {
		listens = append(listens, *listen+"/ws")
	}
	h, err := newHost(hostConfig{
		key:          key,
		listen:       listens,
		reuse:        true,
		relayClient:  true,
		holePunching: true,
		shareTCP:     *share,
	})
	if err != nil {
		return err
	}
	defer h.Close()
	out := &jsonLines{enc: json.NewEncoder(os.Stdout)}

	identified, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		return err
	}
	defer identified.Close()
	h.Network().Notify(&network.NotifyBundle{
		ConnectedF: func(_ network.Network, c network.Conn) {
			out.say(map[string]any{
				"event":      "connection",
				"direction":  direction(c.Stat().Direction),
				"remotePeer": c.RemotePeer().String(),
				"remoteAddr": c.RemoteMultiaddr().String(),
				"localAddr":  c.LocalMultiaddr().String(),
			})
		},
	})
	addrs, err := h.Network().InterfaceListenAddresses()
	if err != nil {
		return err
	}
	// The relay transport listens too, on "/p2p-circuit": keep the TCP addresses.
	addrs = slices.DeleteFunc(addrs, isRelayed)
	out.say(map[string]any{"event": "listening", "peerId": h.ID().String(), "addrs": addrStrings(addrs)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for e := range identified.Out() {
			id := e.(event.EvtPeerIdentificationCompleted)
			var observed any
			if id.ObservedAddr != nil {
				observed = id.ObservedAddr.String()
			}
			out.say(map[string]any{
				"event":        "identify",
				"peer":         id.Peer.String(),
				"observedAddr": observed,
				"listenAddrs":  addrStrings(id.ListenAddrs),
			})
		}
	}()
	if *dial != "" {
		go func() {
			info, err := peer.AddrInfoFromString(*dial)
			if err == nil {
				err = h.Connect(ctx, *info)
			}
			if err != nil {
				out.fail("dial", err, nil)
			}
		}()
	}
	go pingEverySecond(ctx, h, out)
	<-stopSignal()
	return nil
}

func direction(d network.Direction) string {
	switch d {
	case network.DirInbound:
		return "inbound"
	case network.DirOutbound:
		return "outbound"
	default:
		return "unknown"
	}
}

// pingEverySecond pings every connected peer once a second until ctx ends.
func pingEverySecond(ctx context.Context, h host.Host, out *jsonLines) {
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		for _, p := range h.Network().Peers() {
			pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			result := <-ping.Ping(pingCtx, h, p)
			cancel()
			if result.Error != nil {
				out.fail("ping", result.Error, map[string]any{"peer": p.String()})
				continue
			}
			rtt := float64(result.RTT.Microseconds()) / 1000
			out.say(map[string]any{"event": "ping", "peer": p.String(), "rtt": rtt})
		}
	}
}
