package bounded

import (
	"strconv"
	"sync"
	"testing"
)

func TestBounded(t *testing.T) {
	b := New[string, int](100, nil)
	for i := range 1000 {
		b.Put(strconv.Itoa(i), i)
		if b.Len() > 100 {
			t.Fatalf("grew to %d", b.Len())
		}
	}
	if v, ok := b.Get("999"); !ok || v != 999 {
		t.Fatal("the last entry put is gone")
	}
	// Replacing an entry of a full map drops nothing.
	n := b.Len()
	b.Put("999", 1)
	if b.Len() != n {
		t.Fatalf("replacing changed the size from %d to %d", n, b.Len())
	}
	b.Delete("999")
	if _, ok := b.Get("999"); ok {
		t.Fatal("deleted entry still there")
	}
}

func TestStaleGoFirst(t *testing.T) {
	b := New[string, bool](2, func(stale bool) bool { return stale })
	b.Put("stale", true)
	b.Put("fresh", false)
	b.Put("new", false)
	if _, ok := b.Get("stale"); ok {
		t.Error("a stale entry survived while a fresh one could have been dropped")
	}
	for _, k := range []string{"fresh", "new"} {
		if _, ok := b.Get(k); !ok {
			t.Errorf("%s dropped", k)
		}
	}
	b.Put("stale2", true)
	b.Put("stale3", true)
	if got := b.Sweep(); got == 0 || b.Len() > 2 {
		t.Errorf("Sweep dropped %d, %d left", got, b.Len())
	}
}

func TestConcurrent(t *testing.T) {
	b := New[int, int](64, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				b.Put(g*10000+i, i)
				b.Get(i)
			}
		})
	}
	wg.Wait()
	if b.Len() > 64 {
		t.Fatalf("grew to %d", b.Len())
	}
}

func BenchmarkGet(b *testing.B) {
	m := New[string, int](10, nil)
	m.Put("k", 1)
	b.ReportAllocs()
	for b.Loop() {
		m.Get("k")
	}
}
