package ami_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipsentry/sipsentry/ami"
	"github.com/sipsentry/sipsentry/ami/amitest"
)

// BenchmarkClientStream measures events/s through the whole client (socket,
// reader goroutine, ActionID routing, bounded queue, dispatcher, OnMessage)
// over loopback, per iteration one copy of the recorded 189-event session.
// "bare" runs first and is the baseline: the same bytes over a loopback TCP
// socket read with nothing but ami.Reader; "client" reports x_bare.
func BenchmarkClientStream(b *testing.B) {
	raw := clEventsPart(b, clData(b, "ami-security-session.raw"))
	const perOp = 189
	var bareRate float64

	b.Run("bare", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			buf := make([]byte, 1)
			for {
				if _, err := c.Read(buf); err != nil { // one byte = one copy, please
					return
				}
				if _, err := c.Write(raw); err != nil {
					return
				}
			}
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		rd := ami.NewReader(c, ami.ReaderOptions{})
		n := 0
		for b.Loop() {
			c.Write([]byte{1})
			for range perOp {
				if _, err := rd.ReadMessage(); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
		bareRate = float64(n) / b.Elapsed().Seconds()
		b.ReportMetric(bareRate, "events/s")
	})

	b.Run("client", func(b *testing.B) {
		srv := amitest.NewServer(b, amitest.Options{NoFullyBooted: true})
		var got atomic.Int64
		step := make(chan struct{}, 1)
		var target atomic.Int64
		connected := make(chan struct{}, 1)
		c := ami.NewClient(ami.ClientConfig{Address: srv.Addr(), Username: "sentry", Secret: "sentry-secret",
			PingInterval: time.Hour,
			OnMessage: func(ami.Message) {
				if got.Add(1) == target.Load() {
					step <- struct{}{}
				}
			},
			OnConnect: func(context.Context, *ami.Client) error { connected <- struct{}{}; return nil },
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		defer func() { cancel(); <-done }()
		<-connected
		for b.Loop() {
			target.Add(perOp)
			srv.Send(raw)
			<-step
		}
		rate := float64(got.Load()) / b.Elapsed().Seconds()
		b.ReportMetric(rate, "events/s")
		if bareRate > 0 {
			b.ReportMetric(rate/bareRate, "x_bare")
		}
		if d := c.Stats().EventsDropped; d != 0 {
			b.Fatalf("%d events dropped", d)
		}
	})
}
