package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/p2p/net/reuseport"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// How long one dial or echo may take before it counts as failed.
const stepTimeout = 10 * time.Second

// dialer is a reuseport.Transport with one listener on 127.0.0.1, as go-libp2p's TCP transport
// has once it listens: its dials leave from the listening port where they can.
type dialer struct {
	id        int
	transport *reuseport.Transport
	listener  manet.Listener
	port      int
}

func newDialer() (*dialer, error) {
	transport := &reuseport.Transport{}
	listener, err := transport.Listen(ma.StringCast("/ip4/127.0.0.1/tcp/0"))
	if err != nil {
		return nil, fmt.Errorf("listen on 127.0.0.1:0: %w", err)
	}
	port := listener.Addr().(*net.TCPAddr).Port
	return &dialer{transport: transport, listener: listener, port: port}, nil
}

func (d *dialer) dial(remote ma.Multiaddr) (manet.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	return d.transport.DialContext(ctx, remote)
}

func (d *dialer) reused(c manet.Conn) bool {
	local, ok := c.LocalAddr().(*net.TCPAddr)
	return ok && local.Port == d.port
}

// samples is the answer to "seq" and "concurrent".
type samples struct {
	Dials  int     `json:"dials"`
	Reused int     `json:"reused"`
	Failed int     `json:"failed"`
	Times  []int64 `json:"times_ns"`
	Cycles []int64 `json:"cycles_ns"`
	// Times of the dials that left from the listening port, and of the others.
	ReusedTimes []int64 `json:"reused_times_ns"`
	OtherTimes  []int64 `json:"other_times_ns"`
	WallNs      int64   `json:"wall_ns"`
	failedCalls
}

type bench struct {
	counter *syscallCounter
	dialers map[int]*dialer
	next    int
}

func newBench(counter *syscallCounter) *bench {
	return &bench{counter: counter, dialers: make(map[int]*dialer)}
}

func (b *bench) run(args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("empty command")
	}
	switch args[0] {
	case "dialer":
		d, err := newDialer()
		if err != nil {
			return nil, err
		}
		b.next++
		d.id = b.next
		b.dialers[d.id] = d
		return map[string]int{"id": b.next, "port": d.port}, nil
	case "seq":
		if len(args) != 5 {
			return nil, errors.New("usage: seq ID ADDR N MODE")
		}
		d, err := b.dialer(args[1])
		if err != nil {
			return nil, err
		}
		remote, n, err := target(args[2], args[3])
		if err != nil {
			return nil, err
		}
		return b.sequential(d, remote, n, args[4])
	case "concurrent":
		if len(args) != 4 {
			return nil, errors.New("usage: concurrent ID N ADDR[,ADDR...]")
		}
		d, err := b.dialer(args[1])
		if err != nil {
			return nil, err
		}
		return b.concurrent(d, args[2], strings.Split(args[3], ","))
	case "close":
		if len(args) != 2 {
			return nil, errors.New("usage: close ID")
		}
		d, err := b.dialer(args[1])
		if err != nil {
			return nil, err
		}
		delete(b.dialers, d.id)
		return struct{}{}, d.listener.Close()
	default:
		return nil, fmt.Errorf("unknown command %q", args[0])
	}
}

func (b *bench) dialer(id string) (*dialer, error) {
	n, err := strconv.Atoi(id)
	if err != nil || b.dialers[n] == nil {
		return nil, fmt.Errorf("no dialer %q", id)
	}
	return b.dialers[n], nil
}

// target parses "IP:PORT" and a count.
func target(addr, count string) (ma.Multiaddr, int, error) {
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, 0, fmt.Errorf("address %q: %w", addr, err)
	}
	remote, err := manet.FromNetAddr(tcp)
	if err != nil {
		return nil, 0, err
	}
	n, err := strconv.Atoi(count)
	if err != nil {
		return nil, 0, fmt.Errorf("count %q: %w", count, err)
	}
	return remote, n, nil
}

// sequential dials n times one after the other; each connection echoes one byte and ends as
// mode says.
func (b *bench) sequential(d *dialer, remote ma.Multiaddr, n int, mode string) (*samples, error) {
	serverFirst := mode == "server-first"
	if !serverFirst && mode != "client-first" {
		return nil, fmt.Errorf("mode %q: server-first or client-first", mode)
	}
	s := &samples{}
	before := b.counter.snapshot()
	for range n {
		started := time.Now()
		conn, err := d.dial(remote)
		took := time.Since(started).Nanoseconds()
		if err != nil {
			s.Failed++
			continue
		}
		s.Dials++
		s.Times = append(s.Times, took)
		if d.reused(conn) {
			s.Reused++
			s.ReusedTimes = append(s.ReusedTimes, took)
		} else {
			s.OtherTimes = append(s.OtherTimes, took)
		}
		if err := echo(conn, serverFirst); err != nil {
			s.Failed++
		}
		conn.Close()
		s.Cycles = append(s.Cycles, time.Since(started).Nanoseconds())
	}
	s.failedCalls = b.counter.snapshot().since(before)
	return s, nil
}

// echo sends one byte and reads it back; with untilEOF it then reads until the server closes.
func echo(conn manet.Conn, untilEOF bool) error {
	if err := conn.SetDeadline(time.Now().Add(stepTimeout)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte{'x'}); err != nil {
		return err
	}
	var got [1]byte
	if _, err := io.ReadFull(conn, got[:]); err != nil {
		return err
	}
	if untilEOF {
		_, err := io.Copy(io.Discard, conn)
		return err
	}
	return nil
}

// concurrent dials n times at once from d, the i-th dial to addrs[i % len(addrs)], and closes
// the connections once all dials are done.
func (b *bench) concurrent(d *dialer, count string, addrs []string) (*samples, error) {
	remotes := make([]ma.Multiaddr, 0, len(addrs))
	n := 0
	for _, addr := range addrs {
		remote, c, err := target(addr, count)
		if err != nil {
			return nil, err
		}
		remotes, n = append(remotes, remote), c
	}
	conns := make([]manet.Conn, n)
	s := &samples{}
	before := b.counter.snapshot()
	var wg sync.WaitGroup
	started := time.Now()
	for i := range n {
		wg.Go(func() {
			conn, err := d.dial(remotes[i%len(remotes)])
			if err == nil {
				conns[i] = conn
			}
		})
	}
	wg.Wait()
	s.WallNs = time.Since(started).Nanoseconds()
	s.failedCalls = b.counter.snapshot().since(before)
	for _, conn := range conns {
		if conn == nil {
			s.Failed++
			continue
		}
		s.Dials++
		if d.reused(conn) {
			s.Reused++
		}
		conn.Close()
	}
	return s, nil
}
