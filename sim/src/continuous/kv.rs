//! KV block pool with prefix caching (docs/serving.md "One iteration", "Prefix caching"; vLLM V1
//! `BlockPool`).
//!
//! The cache has `capacity` blocks. A block is held by the requests that reference it
//! (`ref_count`); a block nobody holds sits in the free queue, least recently freed first.
//! Allocation takes the head of the free queue; if that block still carried cached content
//! (a full block's key), the key is evicted. Freed blocks are appended in reverse order of the
//! request's blocks, so a request's tail is evicted before its prefix (vLLM). A full block's
//! content is identified by a key (`request that wrote it`, `block index`) — the simulator has
//! no token ids, so shared prompt prefixes are declared by the trace and map to the key of the
//! request that first wrote them. Keys live in a map so a later request (or the same request
//! after recompute preemption) finds the block while it is still cached.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// Hasher for block keys, which are already unique 64-bit integers: one multiply (Fibonacci
/// hashing) instead of SipHash; the pool is not exposed to untrusted keys.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, k: u64) {
        self.0 = (k ^ (k >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type KeyMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

const NIL: u32 = u32::MAX;
const NO_KEY: u64 = u64::MAX;

/// The KV block pool.
#[derive(Debug, Clone)]
pub struct BlockPool {
    capacity: u32,
    ref_count: Vec<u32>,
    key: Vec<u64>,
    prev: Vec<u32>,
    next: Vec<u32>,
    head: u32,
    tail: u32,
    free_len: u32,
    cached: KeyMap,
}

/// Content key of block `block` written by request `owner`.
pub fn block_key(owner: u32, block: u32) -> u64 {
    (u64::from(owner) << 32) | u64::from(block)
}

impl BlockPool {
    /// A pool of `capacity` free, empty blocks.
    pub fn new(capacity: u32) -> Self {
        let n = capacity as usize;
        let mut p = Self {
            capacity,
            ref_count: vec![0; n],
            key: vec![NO_KEY; n],
            prev: vec![NIL; n],
            next: vec![NIL; n],
            head: NIL,
            tail: NIL,
            free_len: 0,
            cached: KeyMap::default(),
        };
        for b in 0..capacity {
            p.push_tail(b);
        }
        p
    }

    /// Blocks in the cache.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Blocks nobody holds (empty or evictable cached content).
    pub fn num_free(&self) -> u32 {
        self.free_len
    }

    /// Blocks held by at least one request.
    pub fn num_used(&self) -> u32 {
        self.capacity - self.free_len
    }

    /// Number of cached (keyed) blocks, held or free.
    pub fn num_cached(&self) -> usize {
        self.cached.len()
    }

    fn push_tail(&mut self, b: u32) {
        let i = b as usize;
        self.prev[i] = self.tail;
        self.next[i] = NIL;
        if self.tail == NIL {
            self.head = b;
        } else {
            self.next[self.tail as usize] = b;
        }
        self.tail = b;
        self.free_len += 1;
        debug_assert!(self.free_len <= self.capacity, "free queue over capacity");
    }

    fn unlink(&mut self, b: u32) {
        let i = b as usize;
        let (p, n) = (self.prev[i], self.next[i]);
        if p == NIL {
            self.head = n;
        } else {
            self.next[p as usize] = n;
        }
        if n == NIL {
            self.tail = p;
        } else {
            self.prev[n as usize] = p;
        }
        self.prev[i] = NIL;
        self.next[i] = NIL;
        debug_assert!(self.free_len > 0, "free queue underflow");
        self.free_len -= 1;
    }

    /// Take a fresh block (least recently freed), evicting its cached content. `None` when no
    /// block is free.
    pub fn allocate(&mut self) -> Option<u32> {
        let b = self.head;
        if b == NIL {
            return None;
        }
        self.unlink(b);
        let i = b as usize;
        debug_assert_eq!(self.ref_count[i], 0);
        if self.key[i] != NO_KEY {
            let k = self.key[i];
            if self.cached.get(&k) == Some(&b) {
                self.cached.remove(&k);
            }
            self.key[i] = NO_KEY;
        }
        self.ref_count[i] = 1;
        Some(b)
    }

    /// The block holding content `key`, if still cached.
    pub fn lookup(&self, key: u64) -> Option<u32> {
        self.cached.get(&key).copied()
    }

    /// `true` when block `b` is in the free queue (nobody holds it).
    pub fn is_free(&self, b: u32) -> bool {
        self.ref_count[b as usize] == 0
    }

    /// Take a reference to a cached block (a prefix hit), removing it from the free queue if
    /// nobody held it.
    pub fn touch(&mut self, b: u32) {
        let i = b as usize;
        if self.ref_count[i] == 0 {
            self.unlink(b);
        }
        self.ref_count[i] += 1;
    }

    /// Release a request's blocks, tail first, so its tail is evicted before its prefix.
    pub fn free(&mut self, blocks: &[u32]) {
        for &b in blocks.iter().rev() {
            let i = b as usize;
            debug_assert!(self.ref_count[i] > 0, "freeing a free block");
            self.ref_count[i] -= 1;
            if self.ref_count[i] == 0 {
                self.push_tail(b);
            }
        }
    }

    /// Record that held block `b` is full with content `key` (the first writer of a content
    /// keeps it, as in vLLM).
    pub fn register(&mut self, b: u32, key: u64) {
        let i = b as usize;
        if self.key[i] != NO_KEY {
            return;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.cached.entry(key) {
            e.insert(b);
            self.key[i] = key;
        }
    }

    /// Full consistency check (O(capacity)): the free queue holds exactly the blocks with
    /// reference count 0, its length is within [0, capacity], and every cache entry points to a
    /// block carrying that key. Returns a description of the first violation.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = 0u32;
        let mut b = self.head;
        let mut prev = NIL;
        while b != NIL {
            let i = b as usize;
            if self.ref_count[i] != 0 {
                return Err(format!(
                    "block {b} in free queue with ref_count {}",
                    self.ref_count[i]
                ));
            }
            if self.prev[i] != prev {
                return Err(format!("free queue link broken at block {b}"));
            }
            seen += 1;
            if seen > self.capacity {
                return Err("free queue longer than capacity (cycle)".into());
            }
            prev = b;
            b = self.next[i];
        }
        if seen != self.free_len {
            return Err(format!("free_len {} but queue has {seen}", self.free_len));
        }
        let zero = self.ref_count.iter().filter(|&&r| r == 0).count() as u32;
        if zero != self.free_len {
            return Err(format!(
                "{zero} blocks with ref 0 but {} free",
                self.free_len
            ));
        }
        for (&k, &b) in &self.cached {
            if self.key[b as usize] != k {
                return Err(format!(
                    "cache entry {k:#x} points to block {b} without that key"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_until_empty_then_none() {
        let mut p = BlockPool::new(3);
        let a: Vec<_> = (0..3).map(|_| p.allocate().unwrap()).collect();
        assert_eq!(a, vec![0, 1, 2]);
        assert_eq!(p.allocate(), None);
        assert_eq!(p.num_used(), 3);
        p.free(&a);
        assert_eq!(p.num_free(), 3);
        p.check().unwrap();
    }

    /// Freed cached blocks stay reusable until reallocated; LRU order evicts the tail of the
    /// most recently freed request last, its tail before its prefix.
    #[test]
    fn lru_reuse_and_eviction_order() {
        let mut p = BlockPool::new(4);
        let r: Vec<_> = (0..3).map(|_| p.allocate().unwrap()).collect();
        for (j, &b) in r.iter().enumerate() {
            p.register(b, block_key(7, j as u32));
        }
        p.free(&r);
        // Free queue: 3 (never used), then 2, 1, 0 (tail first).
        assert_eq!(p.lookup(block_key(7, 0)), Some(0));
        // Resume: hit block 0 and 1.
        p.touch(0);
        p.touch(1);
        assert_eq!(p.num_free(), 2);
        // Next allocation takes block 3 (oldest free), then 2 (evicting key (7,2)).
        assert_eq!(p.allocate(), Some(3));
        assert_eq!(p.lookup(block_key(7, 2)), Some(2));
        assert_eq!(p.allocate(), Some(2));
        assert_eq!(p.lookup(block_key(7, 2)), None);
        assert_eq!(p.lookup(block_key(7, 1)), Some(1));
        p.check().unwrap();
    }

    #[test]
    fn shared_block_counts_references() {
        let mut p = BlockPool::new(2);
        let b = p.allocate().unwrap();
        p.register(b, 42);
        p.touch(b);
        p.free(&[b]);
        assert!(!p.is_free(b));
        p.free(&[b]);
        assert!(p.is_free(b));
        assert_eq!(p.lookup(42), Some(b));
        p.check().unwrap();
    }
}
