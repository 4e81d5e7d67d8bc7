// go-load: a closed-loop load generator built on etcd's own Go client (clientv3, from
// Debian's golang-etcd-server-dev), so that bench/cluster can load oxcd and etcd with a
// client neither of them wrote (GEN=go). It runs the workloads of oxcd-bench that
// bench/cluster uses, with the same keys and values, and prints the fields of
// oxcd-bench's --json summary that the script reads.
//
//	go-load -endpoints 127.0.0.1:2379 -conns 10 -clients 100 -total 50000 put
//	go-load ... range foo            (linearizable)
//	go-load ... -key-space-size 1000 txn-put
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

type summary struct {
	Requests       int64   `json:"requests"`
	Errors         int64   `json:"errors"`
	Seconds        float64 `json:"seconds"`
	RequestsPerSec float64 `json:"requests_per_sec"`
	AverageMs      float64 `json:"average_ms"`
	P50Ms          float64 `json:"p50_ms"`
	P90Ms          float64 `json:"p90_ms"`
	P99Ms          float64 `json:"p99_ms"`
	FirstError     string  `json:"first_error,omitempty"`
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated endpoints; connection i uses endpoint i mod n")
	conns := flag.Int("conns", 1, "gRPC connections")
	clients := flag.Int("clients", 1, "concurrent clients (in-flight requests), spread over the connections")
	total := flag.Int64("total", 10000, "requests in all")
	keySpace := flag.Uint64("key-space-size", 1, "distinct keys written")
	keySize := flag.Int("key-size", 8, "key size in bytes")
	valSize := flag.Int("val-size", 8, "value size in bytes")
	flag.Parse()
	args := flag.Args()
	if len(args) == 0 {
		fail("usage: go-load [flags] put | range KEY | txn-put")
	}
	eps := strings.Split(*endpoints, ",")
	if *conns < 1 || *clients < 1 {
		fail("-conns and -clients must be at least 1")
	}

	value := make([]byte, *valSize)
	for i := range value {
		value[i] = 'x'
	}
	key := func(i uint64) string {
		k := make([]byte, *keySize)
		var be [8]byte
		binary.BigEndian.PutUint64(be[:], i)
		n := *keySize
		if n > 8 {
			n = 8
		}
		copy(k[*keySize-n:], be[8-n:])
		return string(k)
	}
	var seq uint64
	var op func(ctx context.Context, c *clientv3.Client) error
	switch args[0] {
	case "put":
		op = func(ctx context.Context, c *clientv3.Client) error {
			i := atomic.AddUint64(&seq, 1) % *keySpace
			_, err := c.Put(ctx, key(i), string(value))
			return err
		}
	case "range":
		if len(args) < 2 {
			fail("range needs a key")
		}
		k := args[1]
		op = func(ctx context.Context, c *clientv3.Client) error {
			_, err := c.Get(ctx, k)
			return err
		}
	case "txn-put":
		op = func(ctx context.Context, c *clientv3.Client) error {
			i := atomic.AddUint64(&seq, 1) % *keySpace
			_, err := c.Txn(ctx).Then(clientv3.OpPut(key(i), string(value))).Commit()
			return err
		}
	default:
		fail("unknown workload " + args[0])
	}

	cs := make([]*clientv3.Client, *conns)
	for i := range cs {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{eps[i%len(eps)]},
			DialTimeout: 5 * time.Second,
		})
		if err != nil {
			fail(fmt.Sprintf("cannot connect to %s: %v", eps[i%len(eps)], err))
		}
		defer c.Close()
		cs[i] = c
	}

	var issued, errors int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := cs[w%len(cs)]
			for atomic.AddInt64(&issued, 1) <= *total {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				t0 := time.Now()
				err := op(ctx, c)
				cancel()
				if err != nil {
					atomic.AddInt64(&errors, 1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}(w)
	}
	wg.Wait()
	secs := time.Since(start).Seconds()

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return ms(all[int(p*float64(len(all)-1))])
	}
	var sum time.Duration
	for _, d := range all {
		sum += d
	}
	s := summary{Requests: int64(len(all)), Errors: errors, Seconds: secs}
	if secs > 0 {
		s.RequestsPerSec = float64(len(all)) / secs
	}
	if len(all) > 0 {
		s.AverageMs = ms(sum / time.Duration(len(all)))
	}
	s.P50Ms, s.P90Ms, s.P99Ms = q(0.5), q(0.9), q(0.99)
	if e, ok := firstErr.Load().(string); ok {
		s.FirstError = e
	}
	out, _ := json.Marshal(s)
	fmt.Println(string(out))
	if len(all) == 0 {
		os.Exit(2)
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "go-load: "+msg)
	os.Exit(1)
}
