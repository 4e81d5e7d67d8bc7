// watch_events drives clientv3's Watch against the endpoint given as the first
// argument and prints every response it gets, one line each, so that the
// transcripts of etcd and oxcd can be diffed (revisions included).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func must(err error) {
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func show(name string, r clientv3.WatchResponse) {
	switch {
	case r.Created:
		fmt.Printf("%s: created rev=%d\n", name, r.Header.Revision)
	case r.IsProgressNotify():
		fmt.Printf("%s: progress rev=%d\n", name, r.Header.Revision)
	case r.Canceled:
		fmt.Printf("%s: canceled compact=%d err=%v\n", name, r.CompactRevision, r.Err())
	}
	for _, ev := range r.Events {
		prev := "-"
		if ev.PrevKv != nil {
			prev = string(ev.PrevKv.Value)
		}
		fmt.Printf("%s: %s %s=%q mod=%d create=%d ver=%d prev=%s\n", name, ev.Type,
			ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, ev.Kv.CreateRevision, ev.Kv.Version, prev)
	}
}

// next waits for one response on ch.
func next(name string, ch clientv3.WatchChan) {
	select {
	case r, ok := <-ch:
		if !ok {
			fmt.Printf("%s: closed\n", name)
			return
		}
		show(name, r)
	case <-time.After(10 * time.Second):
		fmt.Printf("%s: timeout\n", name)
	}
}

func main() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[1]}, DialTimeout: 5 * time.Second})
	must(err)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	r, err := cli.Put(ctx, "gw/a", "0")
	must(err)
	base := r.Header.Revision

	// History replay with prev_kv, then live events.
	_, err = cli.Put(ctx, "gw/a", "1")
	must(err)
	_, err = cli.Delete(ctx, "gw/a")
	must(err)
	hist := cli.Watch(ctx, "gw/", clientv3.WithPrefix(), clientv3.WithRev(base), clientv3.WithPrevKV(), clientv3.WithCreatedNotify())
	next("hist", hist)
	next("hist", hist)

	// A live watch that only wants deletes, with created notify and progress.
	wctx, wcancel := context.WithCancel(ctx)
	dels := cli.Watch(clientv3.WithRequireLeader(wctx), "gw/", clientv3.WithPrefix(), clientv3.WithFilterPut(), clientv3.WithCreatedNotify(), clientv3.WithProgressNotify())
	next("dels", dels)

	_, err = cli.Put(ctx, "gw/b", "2")
	must(err)
	next("hist", hist)
	_, err = cli.Txn(ctx).Then(clientv3.OpPut("gw/c", "3"), clientv3.OpDelete("gw/b")).Commit()
	must(err)
	next("hist", hist)
	next("dels", dels)

	// RequestProgress: answered with the current revision on every watcher of the stream.
	must(cli.RequestProgress(clientv3.WithRequireLeader(wctx)))
	next("dels", dels)
	wcancel()
	next("dels", dels)
}
