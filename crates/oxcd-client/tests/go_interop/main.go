// interop: the Go side of oxcd-client's registry interop test (tests/go_interop.rs).
//
//	interop resolve ENDPOINT SERVICE          follows SERVICE with etcd's naming/endpoints
//	                                          Manager (a clientv3 prefix get + watch) and
//	                                          prints "Add KEY ADDR METADATA" / "Delete KEY"
//	interop publish ENDPOINT SERVICE ADDRESS  registers as go-zero's discov.Publisher does
//	                                          (SERVICE/<lease id> = ADDRESS under a kept-alive
//	                                          10 s lease), prints "published KEY", and revokes
//	                                          the lease when stdin closes
//	interop lock ENDPOINT NAME                takes NAME with concurrency.Mutex, prints
//	                                          "locked KEY", unlocks when stdin closes and
//	                                          prints "unlocked"
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
	"go.etcd.io/etcd/clientv3/naming/endpoints"
)

func must(what string, err error) {
	if err != nil {
		fmt.Printf("%s: error: %v\n", what, err)
		os.Exit(1)
	}
}

func main() {
	if len(os.Args) < 4 {
		fmt.Println("usage: interop resolve|publish ENDPOINT SERVICE [ADDRESS]")
		os.Exit(2)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{os.Args[2]}, DialTimeout: 5 * time.Second})
	must("dial", err)
	defer cli.Close()
	out := bufio.NewWriter(os.Stdout)
	say := func(format string, args ...interface{}) {
		fmt.Fprintf(out, format+"\n", args...)
		out.Flush()
	}
	ctx := context.Background()
	switch os.Args[1] {
	case "resolve":
		manager, err := endpoints.NewManager(cli, os.Args[3])
		must("manager", err)
		updates, err := manager.NewWatchChannel(ctx)
		must("watch", err)
		say("watching")
		for batch := range updates {
			for _, u := range batch {
				if u.Op == endpoints.Delete {
					say("Delete %s", u.Key)
					continue
				}
				meta, err := json.Marshal(u.Endpoint.Metadata)
				must("metadata", err)
				say("Add %s %s %s", u.Key, u.Endpoint.Addr, meta)
			}
		}
	case "publish":
		if len(os.Args) < 5 {
			fmt.Println("publish needs an ADDRESS")
			os.Exit(2)
		}
		lease, err := cli.Grant(ctx, 10)
		must("grant", err)
		key := os.Args[3] + "/" + strconv.FormatInt(int64(lease.ID), 10)
		_, err = cli.Put(ctx, key, os.Args[4], clientv3.WithLease(lease.ID))
		must("put", err)
		alive, err := cli.KeepAlive(ctx, lease.ID)
		must("keepalive", err)
		go func() {
			for range alive {
			}
		}()
		say("published %s", key)
		io.Copy(io.Discard, os.Stdin)
		_, err = cli.Revoke(ctx, lease.ID)
		must("revoke", err)
		say("revoked")
	case "lock":
		session, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
		must("session", err)
		mutex := concurrency.NewMutex(session, os.Args[3])
		must("lock", mutex.Lock(ctx))
		say("locked %s", mutex.Key())
		io.Copy(io.Discard, os.Stdin)
		must("unlock", mutex.Unlock(ctx))
		say("unlocked")
		session.Close()
	default:
		fmt.Println("unknown mode", os.Args[1])
		os.Exit(2)
	}
}
