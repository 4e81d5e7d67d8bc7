// concurrency: clientv3/concurrency against the endpoint given as the first argument:
// Session (with TTL), Mutex (two sessions contend; a Lock with a deadline as 3.4 has
// no TryLock), Election (Campaign, Leader, Observe, Proclaim, Resign) and STM.
// Sessions' lease ids (part of the lock and election keys) are printed as <S1>/<S2>.
// Revisions are printed where they follow from the program's own writes only.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

func must(what string, err error) {
	if err != nil {
		fmt.Printf("%s: error: %v\n", what, err)
		os.Exit(1)
	}
}

var sessions []string

func norm(s string) string {
	for i, id := range sessions {
		s = strings.Replace(s, id, fmt.Sprintf("<S%d>", i+1), -1)
	}
	return s
}

func newSession(ep string) *concurrency.Session {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	must("dial", err)
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	must("session", err)
	sessions = append(sessions, strconv.FormatInt(int64(s.Lease()), 16))
	ttl, err := cli.TimeToLive(context.Background(), s.Lease())
	must("ttl", err)
	fmt.Printf("session <S%d>: granted ttl=%d\n", len(sessions), ttl.GrantedTTL)
	return s
}

func main() {
	ep := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	s1 := newSession(ep)
	s2 := newSession(ep)
	cli := s1.Client()

	// ---- Mutex
	m1 := concurrency.NewMutex(s1, "/conc/lock")
	m2 := concurrency.NewMutex(s2, "/conc/lock")
	must("m1 lock", m1.Lock(ctx))
	fmt.Printf("m1 acquired key=%s\n", norm(m1.Key()))

	// 3.4 has no TryLock: a Lock with a short deadline fails and cleans up its key.
	tctx, tcancel := context.WithTimeout(ctx, time.Second)
	err := m2.Lock(tctx)
	tcancel()
	fmt.Printf("m2 lock with 1s deadline while m1 holds it: %v\n", err)
	r, err := cli.Get(ctx, "/conc/lock/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	must("get", err)
	for _, kv := range r.Kvs {
		fmt.Printf("lock key %s\n", norm(string(kv.Key)))
	}

	released := make(chan struct{})
	acquired := make(chan struct{})
	go func() {
		must("m2 lock", m2.Lock(ctx))
		select {
		case <-released:
			fmt.Println("m2 acquired after m1 released")
		default:
			fmt.Println("m2 acquired while m1 still held the lock")
		}
		close(acquired)
	}()
	select {
	case <-acquired:
	case <-time.After(500 * time.Millisecond):
		fmt.Println("m2 blocked while m1 holds the lock")
	}
	// Waiters queue by create revision; the owner is the first created key.
	// (Poll until m2's key is there: the goroutine may not have sent its txn yet.)
	for i := 0; i < 100; i++ {
		r, err = cli.Get(ctx, "/conc/lock/", append(clientv3.WithFirstCreate(), clientv3.WithKeysOnly())...)
		must("get", err)
		if r.Count == 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Printf("lock keys while m2 waits: %d, owner %s\n", r.Count, norm(string(r.Kvs[0].Key)))
	// IsOwner as a txn guard (it compares m1's key's create revision).
	t1, err := cli.Txn(ctx).If(m1.IsOwner()).Then(clientv3.OpPut("/conc/guarded", "by-m1")).Commit()
	must("txn", err)
	fmt.Printf("txn if m1 owner: succeeded=%v\n", t1.Succeeded)
	close(released)
	must("m1 unlock", m1.Unlock(ctx))
	<-acquired
	fmt.Printf("m2 holds key=%s\n", norm(m2.Key()))
	must("m2 unlock", m2.Unlock(ctx))
	r, err = cli.Get(ctx, "/conc/lock/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	must("get", err)
	fmt.Printf("lock keys after unlock: %d\n", r.Count)

	// ---- Election
	e1 := concurrency.NewElection(s1, "/conc/elect")
	e2 := concurrency.NewElection(s2, "/conc/elect")
	octx, ocancel := context.WithCancel(ctx)
	obs := concurrency.NewElection(s2, "/conc/elect").Observe(octx)
	observe := func() {
		select {
		case r, ok := <-obs:
			if !ok {
				fmt.Println("observe: closed")
				return
			}
			kv := r.Kvs[0]
			fmt.Printf("observe: leader %s=%s\n", norm(string(kv.Key)), kv.Value)
		case <-time.After(10 * time.Second):
			fmt.Println("observe: timeout")
		}
	}
	leader := func(e *concurrency.Election, who string) {
		r, err := e.Leader(ctx)
		if err != nil {
			fmt.Printf("leader (asked by %s): %v\n", who, err)
			return
		}
		fmt.Printf("leader (asked by %s): %s=%s\n", who, norm(string(r.Kvs[0].Key)), r.Kvs[0].Value)
	}
	leader(e1, "e1")
	must("e1 campaign", e1.Campaign(ctx, "v1"))
	fmt.Printf("e1 elected key=%s\n", norm(e1.Key()))
	observe()

	won := make(chan struct{})
	go func() {
		must("e2 campaign", e2.Campaign(ctx, "v2"))
		close(won)
	}()
	select {
	case <-won:
		fmt.Println("e2 elected while e1 leads")
	case <-time.After(500 * time.Millisecond):
		fmt.Println("e2 campaign blocked while e1 leads")
	}
	leader(e2, "e2")
	must("proclaim", e1.Proclaim(ctx, "v1-updated"))
	observe()
	must("resign", e1.Resign(ctx))
	fmt.Println("e1 resigned")
	<-won
	fmt.Printf("e2 elected key=%s\n", norm(e2.Key()))
	observe()
	leader(e1, "e1")
	err = e1.Proclaim(ctx, "nope")
	fmt.Printf("e1 proclaim after resign: %v\n", err)
	// Cancel Observe while it watches e2's key (a cancel during its Get would
	// make the client log a timing-dependent warning).
	ocancel()
	for range obs {
	}
	fmt.Println("observe: closed after cancel")
	must("resign", e2.Resign(ctx))
	fmt.Println("e2 resigned")
	_, err = e1.Leader(ctx)
	fmt.Printf("leader with no candidates: %v\n", err)

	// ---- STM (serializable snapshot isolation by default)
	_, err = cli.Put(ctx, "/conc/acct/a", "100")
	must("put", err)
	_, err = cli.Put(ctx, "/conc/acct/b", "0")
	must("put", err)
	tr, err := concurrency.NewSTM(cli, func(stm concurrency.STM) error {
		a, _ := strconv.Atoi(stm.Get("/conc/acct/a"))
		b, _ := strconv.Atoi(stm.Get("/conc/acct/b"))
		stm.Put("/conc/acct/a", strconv.Itoa(a-30))
		stm.Put("/conc/acct/b", strconv.Itoa(b+30))
		return nil
	}, concurrency.WithAbortContext(ctx))
	must("stm", err)
	fmt.Printf("stm committed succeeded=%v rev=%d\n", tr.Succeeded, tr.Header.Revision)
	r, err = cli.Get(ctx, "/conc/acct/", clientv3.WithPrefix())
	must("get", err)
	for _, kv := range r.Kvs {
		fmt.Printf("acct %s=%s mod=%d ver=%d\n", kv.Key, kv.Value, kv.ModRevision, kv.Version)
	}

	// ---- Session close revokes the lease (and so deletes keys under it).
	_, err = cli.Put(ctx, "/conc/owned", "x", clientv3.WithLease(s2.Lease()))
	must("put", err)
	must("s2 close", s2.Close())
	select {
	case <-s2.Done():
		fmt.Println("s2 done after close")
	case <-time.After(5 * time.Second):
		fmt.Println("s2 not done after close")
	}
	r, err = cli.Get(ctx, "/conc/owned", clientv3.WithCountOnly())
	must("get", err)
	fmt.Printf("key under s2's lease after close: count=%d\n", r.Count)
	must("s1 close", s1.Close())
	fmt.Println("s1 closed")
}
