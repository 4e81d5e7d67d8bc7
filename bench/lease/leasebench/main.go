// leasebench measures leases on an etcd v3 endpoint (etcd or oxcd), over raw gRPC:
//
//	-mode keepalive  grant -n leases (TTL 600), then keep them all alive on ONE
//	                 LeaseKeepAlive stream for -d: requests are sent back to back,
//	                 at most one outstanding per lease (-n in flight), and every
//	                 response is checked (ID in order, TTL 600). Prints round trips/s.
//	-mode expire     grant -n leases (TTL -ttl) with one key each (exp/NNNNNN), then,
//	                 from a separate connection, measures put latency before the expiry
//	                 (baseline, 2 s) and while the leases expire, and the time until all
//	                 keys are gone (from the moment the last lease's TTL ran out, and
//	                 from the first key gone).
//	-mode grant      grant -n leases (TTL 3600) and exit (the caller measures RSS).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/etcdserver/etcdserverpb"
	"google.golang.org/grpc"
)

func fail(format string, a ...interface{}) {
	fmt.Fprintf(os.Stderr, "leasebench: "+format+"\n", a...)
	os.Exit(1)
}

func dial(ep string) *grpc.ClientConn {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(ctx, ep, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fail("dial %s: %v", ep, err)
	}
	return conn
}

// grantMany grants n leases with 32 concurrent unary calls; returns their ids and when
// the last grant was answered.
func grantMany(lc pb.LeaseClient, n int, ttl int64) ([]int64, time.Time) {
	ids := make([]int64, n)
	var next int64 = -1
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= n {
					return
				}
				r, err := lc.LeaseGrant(context.Background(), &pb.LeaseGrantRequest{TTL: ttl})
				if err != nil {
					fail("grant: %v", err)
				}
				ids[i] = r.ID
			}
		}()
	}
	wg.Wait()
	return ids, time.Now()
}

func keepalive(conn *grpc.ClientConn, n int, d time.Duration) {
	lc := pb.NewLeaseClient(conn)
	ids, _ := grantMany(lc, n, 600)
	st, err := lc.LeaseKeepAlive(context.Background())
	if err != nil {
		fail("keepalive stream: %v", err)
	}
	credits := make(chan struct{}, n) // one outstanding request per lease
	for i := 0; i < n; i++ {
		credits <- struct{}{}
	}
	var stop int32
	sent := make(chan int64, 1)
	go func() {
		var s int64
		for atomic.LoadInt32(&stop) == 0 {
			<-credits
			if err := st.Send(&pb.LeaseKeepAliveRequest{ID: ids[s%int64(n)]}); err != nil {
				fail("send after %d requests: %v", s, err)
			}
			s++
		}
		sent <- s
	}()
	start := time.Now()
	deadline := start.Add(d)
	var got int64
	for time.Now().Before(deadline) {
		r, err := st.Recv()
		if err != nil {
			fail("receive after %d responses: %v", got, err)
		}
		if r.ID != ids[got%int64(n)] || r.TTL != 600 {
			fail("response %d: id %d ttl %d, want id %d ttl 600", got, r.ID, r.TTL, ids[got%int64(n)])
		}
		got++
		credits <- struct{}{}
	}
	el := time.Since(start)
	atomic.StoreInt32(&stop, 1)
	fmt.Printf("keepalive: %d leases on one stream: %d round trips in %.1f s: %.0f/s\n",
		n, got, el.Seconds(), float64(got)/el.Seconds())
}

func percentiles(ls []time.Duration) string {
	if len(ls) == 0 {
		return "no puts"
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i] < ls[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return fmt.Sprintf("p50 %.2f ms p99 %.2f ms max %.2f ms (%d puts)",
		ms(ls[len(ls)/2]), ms(ls[len(ls)*99/100]), ms(ls[len(ls)-1]), len(ls))
}

// prober puts key "probe" in a loop on its own connection and records the latencies.
type prober struct {
	kv   pb.KVClient
	mu   sync.Mutex
	lat  []time.Duration
	stop int32
	done chan struct{}
}

func startProber(ep string) *prober {
	p := &prober{kv: pb.NewKVClient(dial(ep)), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for atomic.LoadInt32(&p.stop) == 0 {
			t := time.Now()
			if _, err := p.kv.Put(context.Background(), &pb.PutRequest{Key: []byte("probe"), Value: []byte("x")}); err != nil {
				fail("probe put: %v", err)
			}
			el := time.Since(t)
			p.mu.Lock()
			p.lat = append(p.lat, el)
			p.mu.Unlock()
		}
	}()
	return p
}

// take returns the latencies recorded so far and starts a new period.
func (p *prober) take() []time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.lat
	p.lat = nil
	return l
}

func count(kv pb.KVClient) int64 {
	r, err := kv.Range(context.Background(), &pb.RangeRequest{Key: []byte("exp/"), RangeEnd: []byte("exp0"), CountOnly: true})
	if err != nil {
		fail("count: %v", err)
	}
	return r.Count
}

func expire(ep string, conn *grpc.ClientConn, n int, ttl int64) {
	lc := pb.NewLeaseClient(conn)
	kv := pb.NewKVClient(conn)
	firstGrant := time.Now()
	ids, lastGrant := grantMany(lc, n, ttl)
	var next int64 = -1
	var wg sync.WaitGroup
	for w := 0; w < 32; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(atomic.AddInt64(&next, 1))
				if i >= n {
					return
				}
				if _, err := kv.Put(context.Background(), &pb.PutRequest{Key: []byte(fmt.Sprintf("exp/%06d", i)), Value: []byte("v"), Lease: ids[i]}); err != nil {
					fail("put: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	setup := time.Since(firstGrant)
	if setup > time.Duration(ttl)*time.Second/2 {
		fail("granting and putting took %v, more than half the TTL: raise -ttl", setup)
	}
	p := startProber(ep)
	time.Sleep(2 * time.Second)
	baseline := p.take()
	// Every lease's TTL has run out by the time the last grant was answered + ttl.
	// Wait for the first key to go.
	var firstGone time.Time
	for {
		if count(kv) < int64(n) {
			firstGone = time.Now()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	p.take() // drop puts from before the expiry started
	for count(kv) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	allGone := time.Now()
	during := p.take()
	atomic.StoreInt32(&p.stop, 1)
	<-p.done
	deadline := lastGrant.Add(time.Duration(ttl) * time.Second)
	fmt.Printf("expire: %d leases (TTL %d s, one key each) set up in %.1f s\n", n, ttl, setup.Seconds())
	fmt.Printf("expire: first key gone %.1f s after the last grant's TTL ran out; all gone %.1f s after it (%.1f s after the first)\n",
		firstGone.Sub(deadline).Seconds(), allGone.Sub(deadline).Seconds(), allGone.Sub(firstGone).Seconds())
	fmt.Printf("expire: put latency before: %s\n", percentiles(baseline))
	fmt.Printf("expire: put latency during: %s\n", percentiles(during))
}

func main() {
	ep := flag.String("ep", "127.0.0.1:2379", "endpoint host:port")
	mode := flag.String("mode", "keepalive", "keepalive | expire | grant")
	n := flag.Int("n", 10000, "number of leases")
	d := flag.Duration("d", 10*time.Second, "keepalive: measuring time")
	ttl := flag.Int64("ttl", 30, "expire: lease TTL in seconds")
	flag.Parse()
	conn := dial(*ep)
	switch *mode {
	case "keepalive":
		keepalive(conn, *n, *d)
	case "expire":
		expire(*ep, conn, *n, *ttl)
	case "grant":
		t := time.Now()
		grantMany(pb.NewLeaseClient(conn), *n, 3600)
		fmt.Printf("grant: %d leases in %.1f s\n", *n, time.Since(t).Seconds())
	default:
		fail("unknown -mode %q", *mode)
	}
}
