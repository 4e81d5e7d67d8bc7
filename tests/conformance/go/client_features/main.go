// client_features: clientv3 client-side features against the endpoint given as the
// first argument: WithRequireLeader on a Watch and a Get, AutoSyncInterval (the client
// replaces its endpoints by the members' client URLs from MemberList), MemberList,
// Status, serializable reads, WithLimit/WithSort and Txn If/Then/Else. The harness
// normalizes ports and member/cluster ids; Status fields that legitimately differ
// (version, db size, raft index/term) are printed as checks only.
package main

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"time"

	"go.etcd.io/etcd/clientv3"
)

func must(what string, err error) {
	if err != nil {
		fmt.Printf("%s: error: %v\n", what, err)
		os.Exit(1)
	}
}

func kvs(what string, r *clientv3.GetResponse) {
	fmt.Printf("%s: count=%d more=%v rev=%d\n", what, r.Count, r.More, r.Header.Revision)
	for _, kv := range r.Kvs {
		fmt.Printf("  %s=%s create=%d mod=%d ver=%d\n", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version)
	}
}

func main() {
	ep := os.Args[1]
	initial := []string{ep}
	cli, err := clientv3.New(clientv3.Config{Endpoints: initial, DialTimeout: 5 * time.Second, AutoSyncInterval: 500 * time.Millisecond})
	must("dial", err)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	// ---- MemberList and AutoSyncInterval
	ml, err := cli.MemberList(ctx)
	must("member list", err)
	fmt.Printf("member list: %d member(s), header member=%d cluster=%d\n", len(ml.Members), ml.Header.MemberId, ml.Header.ClusterId)
	for _, m := range ml.Members {
		fmt.Printf("  id=%x name=%s peer=%v client=%v learner=%v\n", m.ID, m.Name, m.PeerURLs, m.ClientURLs, m.IsLearner)
	}
	fmt.Printf("endpoints before sync: %v\n", cli.Endpoints())
	synced := false
	for i := 0; i < 50 && !synced; i++ {
		time.Sleep(100 * time.Millisecond)
		synced = !reflect.DeepEqual(cli.Endpoints(), initial)
	}
	fmt.Printf("endpoints after auto-sync (synced=%v): %v\n", synced, cli.Endpoints())
	fmt.Printf("endpoints equal member client urls: %v\n", reflect.DeepEqual(cli.Endpoints(), ml.Members[0].ClientURLs))
	must("sync", cli.Sync(ctx))
	fmt.Printf("endpoints after explicit Sync: %v\n", cli.Endpoints())

	// ---- Status
	st, err := cli.Status(ctx, ep)
	must("status", err)
	fmt.Printf("status: leader=%d self=%d leader_is_self=%v learner=%v version_nonempty=%v db_positive=%v in_use_le_size=%v index_positive=%v applied_le_index=%v errors=%v\n",
		st.Leader, st.Header.MemberId, st.Leader == st.Header.MemberId, st.IsLearner, st.Version != "",
		st.DbSize > 0, st.DbSizeInUse <= st.DbSize, st.RaftIndex > 0, st.RaftAppliedIndex <= st.RaftIndex, st.Errors)

	// ---- WithRequireLeader on a Get and a Watch
	lctx := clientv3.WithRequireLeader(ctx)
	p, err := cli.Put(ctx, "cf/a", "1")
	must("put", err)
	base := p.Header.Revision
	g, err := cli.Get(lctx, "cf/a")
	must("get (require leader)", err)
	kvs("get with require leader", g)
	wch := cli.Watch(lctx, "cf/", clientv3.WithPrefix(), clientv3.WithRev(base))
	select {
	case wr := <-wch:
		must("watch (require leader)", wr.Err())
		for _, ev := range wr.Events {
			fmt.Printf("watch with require leader: %s %s=%s mod=%d\n", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
		}
	case <-time.After(10 * time.Second):
		fmt.Println("watch with require leader: timeout")
	}

	// ---- Serializable, limit, sort
	for _, k := range []string{"cf/c", "cf/b", "cf/d"} {
		_, err = cli.Put(ctx, k, k[3:]+"-val")
		must("put", err)
	}
	g, err = cli.Get(ctx, "cf/", clientv3.WithPrefix(), clientv3.WithSerializable())
	must("get serializable", err)
	kvs("get serializable", g)
	g, err = cli.Get(ctx, "cf/", clientv3.WithPrefix(), clientv3.WithLimit(2))
	must("get limit", err)
	kvs("get limit 2", g)
	g, err = cli.Get(ctx, "cf/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend), clientv3.WithLimit(3))
	must("get sort", err)
	kvs("get sort mod desc limit 3", g)
	g, err = cli.Get(ctx, "cf/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend))
	must("get sort", err)
	kvs("get sort value asc", g)
	g, err = cli.Get(ctx, "cf/", clientv3.WithPrefix(), clientv3.WithRev(base), clientv3.WithSerializable())
	must("get rev", err)
	kvs("get serializable at base rev", g)

	// ---- Txn If/Then/Else
	for _, want := range []string{"1", "2"} {
		t, err := cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value("cf/a"), "=", want), clientv3.Compare(clientv3.Version("cf/b"), ">", 0)).
			Then(clientv3.OpPut("cf/a", want+"-then", clientv3.WithPrevKV()), clientv3.OpGet("cf/", clientv3.WithPrefix(), clientv3.WithCountOnly())).
			Else(clientv3.OpGet("cf/a"), clientv3.OpDelete("cf/d", clientv3.WithPrevKV())).
			Commit()
		must("txn", err)
		fmt.Printf("txn if a=%s: succeeded=%v rev=%d\n", want, t.Succeeded, t.Header.Revision)
		for i, op := range t.Responses {
			switch {
			case op.GetResponsePut() != nil:
				r := op.GetResponsePut()
				fmt.Printf("  [%d] put prev=%s\n", i, r.PrevKv.Value)
			case op.GetResponseRange() != nil:
				r := op.GetResponseRange()
				fmt.Printf("  [%d] range count=%d kvs=%d\n", i, r.Count, len(r.Kvs))
			case op.GetResponseDeleteRange() != nil:
				r := op.GetResponseDeleteRange()
				fmt.Printf("  [%d] delete deleted=%d prev=%d\n", i, r.Deleted, len(r.PrevKvs))
			}
		}
	}
	_, err = cli.Delete(ctx, "cf/", clientv3.WithPrefix())
	must("delete", err)
}
