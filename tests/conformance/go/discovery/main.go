// discovery: a service-discovery consumer against the endpoint given as the first
// argument. A provider (its own client) registers /discovery/svc/<lease id> under a
// lease with TTL 3 kept alive by KeepAlive; the consumer lists the prefix, watches it
// from the listing's revision + 1, then the provider stops abruptly: its client is
// closed without revoking, so the lease must *expire*. The consumer must see the
// DELETE within TTL + 1 s. Lease ids are printed as <ID>; durations are not printed,
// only whether the deadline was met.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
)

const ttl = 3

func must(what string, err error) {
	if err != nil {
		fmt.Printf("%s: error: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	ep := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	// Provider.
	prov, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	must("provider dial", err)
	g, err := prov.Grant(ctx, ttl)
	must("grant", err)
	fmt.Printf("provider: granted ttl=%d\n", g.TTL)
	id := strconv.FormatInt(int64(g.ID), 16)
	norm := func(s string) string { return strings.Replace(s, id, "<ID>", -1) }
	key := "/discovery/svc/" + id
	_, err = prov.Put(ctx, key, "127.0.0.1:9000", clientv3.WithLease(g.ID))
	must("register", err)
	ka, err := prov.KeepAlive(context.Background(), g.ID)
	must("keepalive", err)
	first := <-ka
	fmt.Printf("provider: registered %s, first keep-alive ok=%v ttl=%d\n", norm(key), first != nil && first.ID == g.ID, first.TTL)

	// Consumer.
	cons, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	must("consumer dial", err)
	defer cons.Close()
	r, err := cons.Get(ctx, "/discovery/", clientv3.WithPrefix())
	must("get", err)
	for _, kv := range r.Kvs {
		fmt.Printf("consumer: get %s=%s lease=%v version=%d\n", norm(string(kv.Key)), kv.Value,
			clientv3.LeaseID(kv.Lease) == g.ID, kv.Version)
	}
	wch := cons.Watch(ctx, "/discovery/", clientv3.WithPrefix(), clientv3.WithRev(r.Header.Revision+1))

	// Let a couple of keep-alives go through: the key must stay.
	time.Sleep(time.Duration(ttl+1) * time.Second)
	r2, err := cons.Get(ctx, "/discovery/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	must("get", err)
	fmt.Printf("consumer: after %d s of keep-alives count=%d\n", ttl+1, r2.Count)

	// Provider dies: no revoke, the lease has to expire.
	must("provider close", prov.Close())
	stopped := time.Now()
	fmt.Println("provider: stopped without revoking")

	deadline := time.Duration(ttl+1) * time.Second
	select {
	case wr, ok := <-wch:
		if !ok {
			fmt.Println("consumer: watch closed")
			os.Exit(1)
		}
		took := time.Since(stopped)
		for _, ev := range wr.Events {
			verdict := "within deadline"
			if took > deadline {
				verdict = "AFTER deadline"
			}
			fmt.Printf("consumer: %s %s %s\n", ev.Type, norm(string(ev.Kv.Key)), verdict)
		}
	case <-time.After(deadline + 10*time.Second):
		fmt.Println("consumer: no event")
		os.Exit(1)
	}
	r3, err := cons.Get(ctx, "/discovery/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	must("get", err)
	fmt.Printf("consumer: count=%d\n", r3.Count)
	tr, err := cons.TimeToLive(ctx, g.ID)
	must("timetolive", err)
	fmt.Printf("consumer: expired lease ttl=%d\n", tr.TTL)
}
