// gozero_layout: go-zero's etcd registry layout against the endpoint given as the
// first argument. A service instance publishes `order.rpc/<lease id in decimal>` =
// its address, under a lease (TTL 10, go-zero's default) kept alive by KeepAlive. A
// subscriber lists `order.rpc/` with WithPrefix and watches it from the listing's
// revision + 1, as go-zero's discov.Subscriber does; a second instance registers and
// then deregisters with Revoke; finally the first one revokes too. Lease ids are
// printed as <ID1>/<ID2> (in order of grant).
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

const service = "order.rpc"

func must(what string, err error) {
	if err != nil {
		fmt.Printf("%s: error: %v\n", what, err)
		os.Exit(1)
	}
}

var ids []string

func norm(s string) string {
	for i, id := range ids {
		s = strings.Replace(s, id, fmt.Sprintf("<ID%d>", i+1), -1)
	}
	return s
}

type instance struct {
	cli *clientv3.Client
	id  clientv3.LeaseID
	key string
}

func register(ctx context.Context, ep, addr string) *instance {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	must("dial", err)
	g, err := cli.Grant(ctx, 10)
	must("grant", err)
	ids = append(ids, strconv.FormatInt(int64(g.ID), 10))
	key := service + "/" + strconv.FormatInt(int64(g.ID), 10)
	_, err = cli.Put(ctx, key, addr, clientv3.WithLease(g.ID))
	must("put", err)
	ka, err := cli.KeepAlive(context.Background(), g.ID)
	must("keepalive", err)
	go func() {
		for range ka {
		}
	}()
	fmt.Printf("register %s=%s\n", norm(key), addr)
	return &instance{cli, g.ID, key}
}

func (in *instance) deregister(ctx context.Context) {
	_, err := in.cli.Revoke(ctx, in.id)
	must("revoke", err)
	fmt.Printf("deregister %s (revoke)\n", norm(in.key))
	in.cli.Close()
}

func next(wch clientv3.WatchChan) {
	select {
	case wr, ok := <-wch:
		if !ok {
			fmt.Println("watch closed")
			return
		}
		for _, ev := range wr.Events {
			fmt.Printf("event %s %s=%q\n", ev.Type, norm(string(ev.Kv.Key)), ev.Kv.Value)
		}
	case <-time.After(10 * time.Second):
		fmt.Println("watch timeout")
	}
}

func main() {
	ep := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	a := register(ctx, ep, "127.0.0.1:8080")

	sub, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	must("dial", err)
	defer sub.Close()
	r, err := sub.Get(ctx, service+"/", clientv3.WithPrefix())
	must("get", err)
	for _, kv := range r.Kvs {
		fmt.Printf("list %s=%q\n", norm(string(kv.Key)), kv.Value)
	}
	wch := sub.Watch(ctx, service+"/", clientv3.WithPrefix(), clientv3.WithRev(r.Header.Revision+1))

	b := register(ctx, ep, "127.0.0.1:8081")
	next(wch)
	r, err = sub.Get(ctx, service+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	must("get", err)
	for _, kv := range r.Kvs {
		fmt.Printf("list %s\n", norm(string(kv.Key)))
	}
	t, err := sub.TimeToLive(ctx, b.id, clientv3.WithAttachedKeys())
	must("timetolive", err)
	for _, k := range t.Keys {
		fmt.Printf("lease <ID2> granted=%d attached key %s\n", t.GrantedTTL, norm(string(k)))
	}
	b.deregister(ctx)
	next(wch)
	_, err = sub.KeepAliveOnce(ctx, b.id)
	fmt.Printf("keep-alive of the revoked lease: %v\n", err)
	a.deregister(ctx)
	next(wch)
	r, err = sub.Get(ctx, service+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	must("get", err)
	fmt.Printf("count %d\n", r.Count)
}
