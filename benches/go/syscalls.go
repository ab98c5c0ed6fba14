package main

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
)

// The record reuseport.Transport logs when a dial from a listening port failed and it falls
// back to an ephemeral port (p2p/net/reuseport, reuseDial).
const reuseFailed = "failed to reuse port, will try again with a random port"

// syscallCounter counts the failed system calls behind reuseport.Transport's fallbacks.
type syscallCounter struct {
	connect, bind, other atomic.Int64
}

type failedCalls struct {
	Connect int64 `json:"failed_connect"`
	Bind    int64 `json:"failed_bind"`
	Other   int64 `json:"failed_other"`
}

func (c *syscallCounter) snapshot() failedCalls {
	return failedCalls{c.connect.Load(), c.bind.Load(), c.other.Load()}
}

func (f failedCalls) since(before failedCalls) failedCalls {
	return failedCalls{f.Connect - before.Connect, f.Bind - before.Bind, f.Other - before.Other}
}

// handler returns a slog handler that counts reuseport.Transport's fallback records and passes
// warnings and errors of every logger on to `rest`.
func (c *syscallCounter) handler(rest slog.Handler) slog.Handler {
	return &countingHandler{counter: c, rest: rest}
}

type countingHandler struct {
	counter *syscallCounter
	rest    slog.Handler
	logger  string
}

func (h *countingHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.logger == "reuseport-transport" || h.rest.Enabled(ctx, level) && level >= slog.LevelWarn
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.logger == "reuseport-transport" && r.Message == reuseFailed {
		var failure string
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "err" {
				failure = a.Value.String()
			}
			return true
		})
		// The error is a *net.OpError around an *os.SyscallError that names the call.
		switch {
		case strings.Contains(failure, "connect: "):
			h.counter.connect.Add(1)
		case strings.Contains(failure, "bind: "):
			h.counter.bind.Add(1)
		default:
			h.counter.other.Add(1)
		}
		return nil
	}
	if r.Level >= slog.LevelWarn {
		return h.rest.Handle(ctx, r)
	}
	return nil
}

func (h *countingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	next := *h
	for _, a := range attrs {
		if a.Key == "logger" {
			next.logger = a.Value.String()
		}
	}
	next.rest = h.rest.WithAttrs(attrs)
	return &next
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	next := *h
	next.rest = h.rest.WithGroup(name)
	return &next
}
