package main

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"
)

// runRelay serves circuit relay v2 (go-libp2p's default resources and limits) until SIGINT or
// SIGTERM, printing its addresses, reservations and circuits.
func runRelay(a holepunchArgs, key crypto.PrivKey, out sayer) error {
	h, err := newHost(hostConfig{key: key, listen: []string{a.listen}, reuse: a.reuse})
	if err != nil {
		return err
	}
	defer h.Close()
	out.say("peer %s", h.ID())
	// The relay service is created directly: libp2p.EnableRelayService would start it only
	// once AutoNAT reports public reachability.
	service, err := relay.New(h, relay.WithACL(announcer{out}))
	if err != nil {
		return err
	}
	defer service.Close()
	addrs, err := h.Network().InterfaceListenAddresses()
	if err != nil {
		return err
	}
	for _, addr := range slices.DeleteFunc(addrs, isRelayed) {
		out.say("listening on %s/p2p/%s", addr, h.ID())
	}
	<-stopSignal()
	return nil
}

// announcer admits every reservation and circuit and prints it.
type announcer struct{ out sayer }

func (a announcer) AllowReserve(p peer.ID, _ ma.Multiaddr) bool {
	a.out.say("reservation for %s", p)
	return true
}

func (a announcer) AllowConnect(src peer.ID, _ ma.Multiaddr, dst peer.ID) bool {
	a.out.say("circuit %s -> %s", src, dst)
	return true
}
