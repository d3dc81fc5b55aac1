//! Pending output as a queue of fixed-size blocks, drawn from a small per-thread free list.
//!
//! Why not one growing buffer: growing a `Vec`/`BytesMut` reallocates, and large allocations
//! come straight from `mmap`: every growth faulted in fresh zeroed pages (`clear_page`), and
//! every buffer given back when a connection caught up was unmapped again (`munmap`), only to
//! be mapped afresh on the next burst. Under mass ingest that was most of the server's CPU,
//! and one turn of the loop could spend tens of milliseconds in the kernel.
//!
//! Here output grows by whole blocks ([`BLOCK_SIZE`]) and never moves once written. A block
//! that has been sent goes back to the thread's free list, whose pages are already mapped and
//! warm, so the next connection to need one takes it without a page fault. The free list is
//! bounded ([`FREE_LIST_BLOCKS`]): beyond it, blocks go back to the allocator. An empty queue
//! holds no heap memory at all, so an idle connection still costs nothing.
//!
//! The free list is per thread because the reactor is: one loop, one thread, no locking. It is
//! an allocator detail, so the connection's interface does not change, and tests see the same
//! bytes either way.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::IoSlice;

/// Bytes per block: 16 pages. Small enough for the allocator's heap (below glibc's 128 KiB
/// `mmap` threshold), large enough that a 32 MiB backlog is 512 blocks.
pub(super) const BLOCK_SIZE: usize = 64 * 1024;

/// Most blocks kept for reuse per thread: 64 MiB. Enough for a few hundred connections to
/// catch up and burst again without touching fresh pages; a backlog beyond it (gigabytes under
/// mass ingest) goes back to the allocator as it drains.
pub(super) const FREE_LIST_BLOCKS: usize = 1024;

/// Most slices one [`BlockQueue::front_slices`] call hands out (one `writev`).
pub(super) const MAX_SLICES: usize = 16;

thread_local! {
    static FREE_LIST: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty block: a warm one from the free list if there is one.
fn take_block() -> Vec<u8> {
    FREE_LIST
        .with(|list| list.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(BLOCK_SIZE))
}

/// Returns a block to the free list (or the allocator, when the list is full).
fn give_block(mut block: Vec<u8>) {
    block.clear();
    FREE_LIST.with(|list| {
        let mut list = list.borrow_mut();
        if list.len() < FREE_LIST_BLOCKS {
            list.push(block);
        }
    });
}

/// Blocks waiting on this thread's free list.
#[cfg(test)]
fn free_blocks() -> usize {
    FREE_LIST.with(|list| list.borrow().len())
}

/// Bytes in order, oldest first, in blocks of [`BLOCK_SIZE`]. Each block's `len` is how far
/// it is filled; `head` is how much of the front block was already sent.
#[derive(Debug, Default)]
pub(super) struct BlockQueue {
    blocks: VecDeque<Vec<u8>>,
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

    /// Heap bytes held for the queued bytes: whole blocks.
    pub(super) fn capacity(&self) -> usize {
        self.blocks.len() * BLOCK_SIZE
    }

    /// Appends `data`, filling the last block before taking a new one.
    pub(super) fn extend_from_slice(&mut self, mut data: &[u8]) {
        self.len += data.len();
        while !data.is_empty() {
            let room = self
                .blocks
                .back()
                .map_or(0, |block| BLOCK_SIZE - block.len());
            if room == 0 {
                self.blocks.push_back(take_block());
                continue;
            }
            let (now, later) = data.split_at(room.min(data.len()));
            if let Some(block) = self.blocks.back_mut() {
                block.extend_from_slice(now); // within capacity: never reallocates
            }
            data = later;
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
            let end = block.len().min(start + left);
            out[filled] = IoSlice::new(&block[start..end]);
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
            let done = self.head >= front.len() && (front.len() == BLOCK_SIZE || self.len == 0);
            if !done {
                break;
            }
            self.head -= front.len();
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
        FREE_LIST.with(|list| list.borrow_mut().clear());
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
        assert_eq!(free_blocks(), FREE_LIST_BLOCKS);
    }
}
