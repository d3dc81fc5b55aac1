//! Pending output as a queue of fixed-size blocks, drawn from a small per-thread free list, and
//! given back to the operating system once a burst is over.
//!
//! Why not one growing buffer: growing a `Vec`/`BytesMut` reallocates, and large allocations
//! come straight from `mmap`: every growth faulted in fresh zeroed pages (`clear_page`), and
//! every buffer given back when a connection caught up was unmapped again (`munmap`), only to
//! be mapped afresh on the next burst. Under mass ingest that was most of the server's CPU,
//! and one turn of the loop could spend tens of milliseconds in the kernel.
//!
//! Here output grows by whole blocks ([`BLOCK_SIZE`]) and never moves once written. A block
//! that has been sent goes back to the thread's free list, whose pages are already mapped and
//! warm, so the next connection to need one takes it without a page fault. An empty queue
//! holds no memory at all, so an idle connection still costs nothing.
//!
//! Giving memory back. Each block is its own anonymous mapping (`memmap2`'s safe `map_anon`,
//! populated in the same call: one syscall instead of sixteen page faults), not a heap
//! allocation: the allocator keeps freed heap pages for itself (glibc returns only the top of
//! its heap, and a gigabyte of blocks freed after a burst stayed resident for good), while an
//! unmapped block is back with the kernel at once, whatever else the heap holds. The free list
//! keeps up to [`FREE_LIST_BLOCKS`] for reuse; blocks beyond it, and blocks the list kept but
//! nobody took for a whole [`DECAY_INTERVAL`] (`decay`, the reactor calls it), are *surplus*:
//! the reactor unmaps them a few per turn (`release`), so that closing a hundred connections
//! with gigabytes pending never makes one long turn. The other ways weighed: a trim of the
//! allocator (`malloc_trim`) needs `unsafe` FFI, which the library denies, and works only on
//! glibc; an allocator with decay (jemalloc, mimalloc) is a choice for the binary that an
//! embedder does not get, and it decays only while it is called (or with a thread of its own).
//!
//! The free list is per thread because the reactor is: one loop, one thread, no locking. It is
//! an allocator detail, so the connection's interface does not change, and tests see the same
//! bytes either way.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::Duration;

use memmap2::{MmapMut, MmapOptions};

/// Bytes per block: 16 pages; a 32 MiB backlog is 512 blocks.
pub(super) const BLOCK_SIZE: usize = 64 * 1024;

/// Most blocks kept for reuse per thread: 64 MiB. Enough for a few hundred connections to
/// catch up and burst again without mapping fresh pages; a backlog beyond it (gigabytes under
/// mass ingest) is surplus as it drains.
pub(super) const FREE_LIST_BLOCKS: usize = 1024;

/// How often the reactor calls [`decay`] while its free list holds blocks: blocks that stayed
/// on the list a whole interval become surplus. So a burst's blocks are unmapped within two
/// intervals of its end.
pub(crate) const DECAY_INTERVAL: Duration = Duration::from_secs(1);

/// Most blocks one [`release`] call unmaps: 4 MiB, a fraction of a millisecond of `munmap`.
pub(crate) const RELEASE_PER_CALL: usize = 64;

/// Most slices one [`BlockQueue::front_slices`] call hands out (one `writev`).
pub(super) const MAX_SLICES: usize = 16;

/// One block's memory: its own mapping, or (if mapping failed, e.g. past the kernel's limit
/// on mappings) a heap allocation, so that running out of mappings never stops the server.
#[derive(Debug)]
enum Memory {
    Mapped(MmapMut),
    Heap(Box<[u8]>),
}

/// A block of [`BLOCK_SIZE`] bytes, filled up to `len`.
#[derive(Debug)]
struct Block {
    memory: Memory,
    len: usize,
}

impl Block {
    /// A fresh, empty block (mapped and populated when the kernel allows).
    fn new() -> Block {
        let memory = match MmapOptions::new().len(BLOCK_SIZE).populate().map_anon() {
            Ok(map) => Memory::Mapped(map),
            Err(_) => Memory::Heap(vec![0; BLOCK_SIZE].into_boxed_slice()),
        };
        Block { memory, len: 0 }
    }

    fn bytes(&self) -> &[u8] {
        match &self.memory {
            Memory::Mapped(map) => map,
            Memory::Heap(heap) => heap,
        }
    }

    /// Bytes filled so far.
    fn filled(&self) -> &[u8] {
        &self.bytes()[..self.len]
    }

    /// Appends as much of `data` as fits; returns how much did.
    fn fill(&mut self, data: &[u8]) -> usize {
        let start = self.len;
        let room = match &mut self.memory {
            Memory::Mapped(map) => &mut map[start..],
            Memory::Heap(heap) => &mut heap[start..],
        };
        let n = room.len().min(data.len());
        room[..n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }
}

/// A thread's spare blocks, and what of them is surplus.
#[derive(Debug)]
struct FreeList {
    blocks: Vec<Block>,
    /// The fewest blocks the list held since the last [`decay`]: that many were not needed.
    low: usize,
    /// Blocks [`decay`] found unneeded, still to be unmapped by [`release`].
    unneeded: usize,
}

impl FreeList {
    /// Blocks to unmap: those beyond the bound, or those found unneeded, whichever is more.
    fn surplus(&self) -> usize {
        let len = self.blocks.len();
        len.saturating_sub(FREE_LIST_BLOCKS)
            .max(self.unneeded.min(len))
    }
}

thread_local! {
    static FREE_LIST: RefCell<FreeList> = const {
        RefCell::new(FreeList { blocks: Vec::new(), low: 0, unneeded: 0 })
    };
}

/// An empty block: a warm one from the free list if there is one.
fn take_block() -> Block {
    FREE_LIST
        .with(|list| {
            let mut list = list.borrow_mut();
            let block = list.blocks.pop();
            list.low = list.low.min(list.blocks.len());
            block
        })
        .unwrap_or_else(Block::new)
}

/// Returns a block to the free list (surplus, if the list is over its bound).
fn give_block(mut block: Block) {
    block.len = 0;
    FREE_LIST.with(|list| list.borrow_mut().blocks.push(block));
}

/// Blocks on this thread's free list, surplus included.
pub(crate) fn free_blocks() -> usize {
    FREE_LIST.with(|list| list.borrow().blocks.len())
}

/// True while this thread's free list has surplus blocks for [`release`] to unmap.
pub(crate) fn has_surplus() -> bool {
    FREE_LIST.with(|list| list.borrow().surplus() > 0)
}

/// Unmaps up to [`RELEASE_PER_CALL`] surplus blocks of this thread's free list; returns how
/// many it unmapped.
pub(crate) fn release() -> usize {
    // Taken out of the list first: unmapping happens outside the borrow.
    let surplus: Vec<Block> = FREE_LIST.with(|list| {
        let mut list = list.borrow_mut();
        let n = list.surplus().min(RELEASE_PER_CALL);
        if n == 0 {
            return Vec::new(); // the common case, every turn: no allocation, no syscall
        }
        let keep = list.blocks.len() - n;
        list.unneeded -= n.min(list.unneeded);
        list.low = list.low.min(keep);
        list.blocks.split_off(keep)
    });
    surplus.len()
}

/// Marks as surplus the blocks this thread's free list held all along since the last call
/// (nobody needed them); the reactor calls it every [`DECAY_INTERVAL`] while the list holds
/// blocks.
pub(crate) fn decay() {
    FREE_LIST.with(|list| {
        let mut list = list.borrow_mut();
        list.unneeded = list.unneeded.max(list.low);
        list.low = list.blocks.len();
    });
}

/// Bytes in order, oldest first, in blocks of [`BLOCK_SIZE`]. Each block's `len` is how far
/// it is filled; `head` is how much of the front block was already sent.
#[derive(Debug, Default)]
pub(super) struct BlockQueue {
    blocks: VecDeque<Block>,
    head: usize,
    len: usize,
}

impl BlockQueue {
    /// An empty queue; allocates nothing.
    pub(super) fn new() -> BlockQueue {
        BlockQueue::default()
    }

    /// Bytes queued.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is queued (and nothing is held).
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory held for the queued bytes: whole blocks.
    pub(super) fn capacity(&self) -> usize {
        self.blocks.len() * BLOCK_SIZE
    }

    /// Appends `data`, filling the last block before taking a new one.
    pub(super) fn extend_from_slice(&mut self, mut data: &[u8]) {
        self.len += data.len();
        while !data.is_empty() {
            let filled = match self.blocks.back_mut() {
                Some(block) if block.len < BLOCK_SIZE => block.fill(data),
                _ => {
                    self.blocks.push_back(take_block());
                    continue;
                }
            };
            data = &data[filled..];
        }
    }

    /// The oldest bytes, at most `max` of them, as slices for one vectored write; returns how
    /// many slices of `out` it filled.
    pub(super) fn front_slices<'a>(
        &'a self,
        max: usize,
        out: &mut [IoSlice<'a>; MAX_SLICES],
    ) -> usize {
        let mut left = max.min(self.len);
        let mut filled = 0;
        for (i, block) in self.blocks.iter().enumerate() {
            if left == 0 || filled == MAX_SLICES {
                break;
            }
            let start = if i == 0 { self.head } else { 0 };
            let end = block.len.min(start + left);
            out[filled] = IoSlice::new(&block.filled()[start..end]);
            left -= end - start;
            filled += 1;
        }
        filled
    }

    /// Drops the `n` oldest bytes (they were sent); blocks emptied go back to the free list.
    pub(super) fn advance(&mut self, n: usize) {
        assert!(n <= self.len, "advance past the end of the queue");
        self.len -= n;
        self.head += n;
        while let Some(front) = self.blocks.front() {
            // A block is done once everything it will ever hold is sent: it is full, or it is
            // the last one and the queue is now empty.
            let done = self.head >= front.len && (front.len == BLOCK_SIZE || self.len == 0);
            if !done {
                break;
            }
            self.head -= front.len;
            if let Some(block) = self.blocks.pop_front() {
                give_block(block);
            }
        }
        if self.len == 0 {
            // Hold no heap memory while empty, not even the deque's table of blocks.
            *self = BlockQueue::new();
        }
    }
}

impl Drop for BlockQueue {
    fn drop(&mut self) {
        for block in self.blocks.drain(..) {
            give_block(block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    }

    /// Drains the queue through `front_slices` in pieces of `step` bytes.
    fn drain(queue: &mut BlockQueue, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = queue.front_slices(step, &mut slices);
            let taken: usize = slices[..n].iter().map(|s| s.len()).sum();
            assert!(taken > 0 && taken <= step);
            for slice in &slices[..n] {
                out.extend_from_slice(slice);
            }
            queue.advance(taken);
        }
        out
    }

    #[test]
    fn bytes_come_out_in_order_across_blocks() {
        let mut queue = BlockQueue::new();
        let (a, b) = (bytes(BLOCK_SIZE - 10, 1), bytes(3 * BLOCK_SIZE + 77, 2));
        queue.extend_from_slice(&a);
        queue.extend_from_slice(&b);
        assert_eq!(queue.len(), a.len() + b.len());
        assert_eq!(queue.capacity(), 5 * BLOCK_SIZE);
        let out = drain(&mut queue, 100_000);
        assert_eq!(out, [a, b].concat());
        assert_eq!(queue.capacity(), 0, "an empty queue holds nothing");
    }

    #[test]
    fn interleaved_appends_and_partial_sends_keep_order() {
        let mut queue = BlockQueue::new();
        let mut want = Vec::new();
        let mut got = Vec::new();
        for round in 0..50u8 {
            let data = bytes(7_919 * (round as usize % 13 + 1), round);
            queue.extend_from_slice(&data);
            want.extend_from_slice(&data);
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = queue.front_slices(12_345, &mut slices);
            let mut taken = 0;
            for slice in &slices[..n] {
                got.extend_from_slice(slice);
                taken += slice.len();
            }
            queue.advance(taken);
        }
        got.extend(drain(&mut queue, usize::MAX));
        assert_eq!(got, want);
    }

    #[test]
    fn one_write_takes_at_most_max_slices_blocks() {
        let mut queue = BlockQueue::new();
        queue.extend_from_slice(&bytes(20 * BLOCK_SIZE, 3));
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        assert_eq!(queue.front_slices(usize::MAX, &mut slices), MAX_SLICES);
        assert_eq!(queue.front_slices(BLOCK_SIZE + 1, &mut slices), 2);
    }

    #[test]
    fn sent_blocks_are_reused_and_the_free_list_is_bounded() {
        // Tests may share a thread (`--test-threads=1`): start from an empty free list.
        empty_the_free_list();
        let before = free_blocks();
        let mut queue = BlockQueue::new();
        queue.extend_from_slice(&bytes(4 * BLOCK_SIZE, 4));
        queue.advance(4 * BLOCK_SIZE);
        assert_eq!(free_blocks(), before + 4);
        queue.extend_from_slice(&bytes(3 * BLOCK_SIZE, 5));
        assert_eq!(free_blocks(), before + 1, "blocks came from the free list");
        drop(queue);
        assert_eq!(
            free_blocks(),
            before + 4,
            "dropping a queue gives its blocks back"
        );

        let mut big = BlockQueue::new();
        big.extend_from_slice(&bytes((FREE_LIST_BLOCKS + 10) * BLOCK_SIZE, 6));
        drop(big);
        // Beyond the bound, blocks are surplus: unmapped a few per call.
        assert!(has_surplus());
        let mut released = 0;
        while has_surplus() {
            let n = release();
            assert!(n > 0 && n <= RELEASE_PER_CALL);
            released += n;
        }
        assert_eq!(
            released, 10,
            "the queue took 4 blocks from the list and mapped 1,030"
        );
        assert_eq!(free_blocks(), FREE_LIST_BLOCKS);
        empty_the_free_list();
    }

    /// Drops every block of this thread's free list.
    fn empty_the_free_list() {
        FREE_LIST.with(|list| {
            let mut list = list.borrow_mut();
            list.blocks.clear();
            list.low = 0;
            list.unneeded = 0;
        });
    }

    #[test]
    fn blocks_nobody_took_for_an_interval_decay() {
        empty_the_free_list();
        let mut queue = BlockQueue::new();
        queue.extend_from_slice(&bytes(10 * BLOCK_SIZE, 7));
        drop(queue);
        assert_eq!(free_blocks(), 10);
        decay(); // the first interval starts: nothing is known unneeded yet
        assert!(!has_surplus());
        // Three blocks are taken and given back during the interval: seven were not needed.
        let mut queue = BlockQueue::new();
        queue.extend_from_slice(&bytes(3 * BLOCK_SIZE, 8));
        drop(queue);
        decay();
        assert!(has_surplus());
        while release() > 0 {}
        assert_eq!(free_blocks(), 3);
        // A whole interval without use: the rest goes too.
        decay();
        while release() > 0 {}
        assert_eq!(free_blocks(), 0);
        assert!(!has_surplus());
    }

    #[test]
    fn a_block_that_could_not_be_mapped_works_from_the_heap() {
        let mut block = Block {
            memory: Memory::Heap(vec![0; BLOCK_SIZE].into_boxed_slice()),
            len: 0,
        };
        assert_eq!(block.fill(&bytes(BLOCK_SIZE + 5, 9)), BLOCK_SIZE);
        assert_eq!(block.filled(), &bytes(BLOCK_SIZE, 9)[..]);
    }
}
