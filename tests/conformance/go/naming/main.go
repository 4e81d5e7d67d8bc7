// naming: clientv3/naming against the endpoint given as the first argument. Debian's
// golang-etcd-server-dev ships the endpoints/resolver API (endpoints.Manager and an
// etcd-backed gRPC resolver.Builder) instead of 3.4's naming.GRPCResolver. The
// program adds and deletes endpoints of a service with Manager.Update/AddEndpoint/
// DeleteEndpoint (one with a lease), follows them with NewWatchChannel and with the
// gRPC resolver (through a recording resolver.ClientConn), and prints every update.
package main

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/naming/endpoints"
	"go.etcd.io/etcd/clientv3/naming/resolver"
	gresolver "google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
)

const svc = "naming/greeter"

func must(what string, err error) {
	if err != nil {
		fmt.Printf("%s: error: %v\n", what, err)
		os.Exit(1)
	}
}

// recorder is a gRPC resolver.ClientConn that forwards each address list.
type recorder struct{ ch chan []string }

func (r *recorder) UpdateState(s gresolver.State) {
	var addrs []string
	for _, a := range s.Addresses {
		addrs = append(addrs, a.Addr)
	}
	sort.Strings(addrs)
	r.ch <- addrs
}
func (r *recorder) ReportError(err error)            { fmt.Println("resolver: error:", err) }
func (r *recorder) NewAddress(_ []gresolver.Address) {}
func (r *recorder) NewServiceConfig(_ string)        {}
func (r *recorder) ParseServiceConfig(_ string) *serviceconfig.ParseResult {
	return nil
}

func nextUpdates(wch endpoints.WatchChannel) {
	select {
	case ups, ok := <-wch:
		if !ok {
			fmt.Println("watch: closed")
			return
		}
		for _, u := range ups {
			op := "Add"
			if u.Op == endpoints.Delete {
				op = "Delete"
			}
			fmt.Printf("watch: %s %s addr=%q metadata=%v\n", op, u.Key, u.Endpoint.Addr, u.Endpoint.Metadata)
		}
	case <-time.After(10 * time.Second):
		fmt.Println("watch: timeout")
	}
}

func nextState(rec *recorder) {
	select {
	case addrs := <-rec.ch:
		fmt.Printf("resolver: [%s]\n", strings.Join(addrs, " "))
	case <-time.After(10 * time.Second):
		fmt.Println("resolver: timeout")
	}
}

func list(ctx context.Context, em endpoints.Manager) {
	m, err := em.List(ctx)
	must("list", err)
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Printf("list: %s addr=%q\n", k, m[k].Addr)
	}
	fmt.Printf("list: %d endpoints\n", len(keys))
}

func main() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 5 * time.Second})
	must("dial", err)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	em, err := endpoints.NewManager(cli, svc)
	must("manager", err)
	must("add", em.AddEndpoint(ctx, svc+"/a", endpoints.Endpoint{Addr: "10.0.0.1:50051"}))
	fmt.Println("added a")

	wctx, wcancel := context.WithCancel(ctx)
	wch, err := em.NewWatchChannel(wctx)
	must("watch channel", err)
	nextUpdates(wch) // the initial listing

	b, err := resolver.NewBuilder(cli)
	must("builder", err)
	fmt.Println("builder scheme:", b.Scheme())
	rec := &recorder{ch: make(chan []string, 16)}
	res, err := b.Build(gresolver.Target{Scheme: "etcd", Endpoint: svc}, rec, gresolver.BuildOptions{})
	must("build", err)
	nextState(rec)

	// Two adds in one Update (one txn), one of them under a lease.
	g, err := cli.Grant(ctx, 30)
	must("grant", err)
	must("update", em.Update(ctx, []*endpoints.UpdateWithOpts{
		endpoints.NewAddUpdateOpts(svc+"/b", endpoints.Endpoint{Addr: "10.0.0.2:50051", Metadata: "zone-b"}),
		endpoints.NewAddUpdateOpts(svc+"/c", endpoints.Endpoint{Addr: "10.0.0.3:50051"}, clientv3.WithLease(g.ID)),
	}))
	fmt.Println("updated: add b, add c (leased)")
	nextUpdates(wch)
	nextState(rec)
	list(ctx, em)

	must("delete", em.DeleteEndpoint(ctx, svc+"/a"))
	fmt.Println("deleted a")
	nextUpdates(wch)
	nextState(rec)

	_, err = cli.Revoke(ctx, g.ID)
	must("revoke", err)
	fmt.Println("revoked c's lease")
	nextUpdates(wch)
	nextState(rec)

	// A key outside the target must be refused.
	err = em.AddEndpoint(ctx, "other/x", endpoints.Endpoint{Addr: "x"})
	fmt.Println("add outside target:", err)

	must("update", em.Update(ctx, []*endpoints.UpdateWithOpts{endpoints.NewDeleteUpdateOpts(svc + "/b")}))
	fmt.Println("updated: delete b")
	nextUpdates(wch)
	nextState(rec)
	list(ctx, em)

	res.Close()
	wcancel()
	if _, ok := <-wch; !ok {
		fmt.Println("watch: closed after cancel")
	}
}
